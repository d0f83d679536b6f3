"""A tiny, deterministic, learnable universe for unit tests and smoke runs; built in memory, no encoders.

Images have one value for each of `n_attributes` attributes; an image's feature is the sum of its values' prototype
vectors plus noise. Task "which value of attribute a?" (several tasks per attribute, each over a subset of values)
scores images against answer embeddings that are the prototypes seen through a fixed random rotation mixed with the
prototypes themselves: the identity adapter is better than chance, a learned adapter (shared across tasks) is better
still. A question's embedding is its attribute's code plus a little per-task noise, so conditioning can help.
"""

from __future__ import annotations

import torch

from hyperguide.data.features import FeatureTable
from hyperguide.data.tasks import TaskSpec, Universe


def synthetic_universe(
    *,
    n_attributes: int = 4,
    n_values: int = 4,
    tasks_per_attribute: int = 6,
    n_images: int = 400,
    examples_per_task: int = 40,
    dim: int = 16,
    noise: float = 0.3,
    seed: int = 0,
) -> Universe:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(n_attributes, n_values, dim, generator=g) / dim**0.5 * 2  # (A, V, D)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    answer_vectors = 0.5 * prototypes + 0.5 * prototypes @ rotation  # (A, V, D)
    attribute_codes = torch.randn(n_attributes, dim, generator=g)  # (A, D)

    values = torch.randint(0, n_values, (n_images, n_attributes), generator=g)  # (N, A)
    image_x = prototypes[torch.arange(n_attributes), values].sum(1) + noise * torch.randn(n_images, dim, generator=g)
    image_keys = [f"img{i}" for i in range(n_images)]

    tasks: list[TaskSpec] = []
    text_keys: list[str] = []
    text_rows: list[torch.Tensor] = []
    for a in range(n_attributes):
        for j in range(tasks_per_attribute):
            k = 2 + j % (n_values - 1)  # 2..n_values answers
            chosen = torch.randperm(n_values, generator=g)[:k].sort().values.tolist()
            question = f"which value of attribute {a} is shown (variant {j})?"
            prompts = tuple(f"attribute {a} has value {v}" for v in chosen)
            candidates = [i for i in torch.randperm(n_images, generator=g).tolist() if int(values[i, a]) in chosen]
            picked = candidates[:examples_per_task]
            labels = [chosen.index(int(values[i, a])) for i in picked]
            cut = int(0.7 * len(picked))
            tasks.append(
                TaskSpec(
                    question=question,
                    answers=tuple(f"value {v}" for v in chosen),
                    prompts=prompts,
                    support_images=tuple(image_keys[i] for i in picked[:cut]),
                    support_labels=tuple(labels[:cut]),
                    query_images=tuple(image_keys[i] for i in picked[cut:]),
                    query_labels=tuple(labels[cut:]),
                )
            )
            text_keys.append(question)
            text_rows.append(attribute_codes[a] + 0.1 * torch.randn(dim, generator=g))
            for v, p in zip(chosen, prompts, strict=True):
                if p not in text_keys:
                    text_keys.append(p)
                    text_rows.append(answer_vectors[a, v])

    n = len(tasks)
    order = torch.randperm(n, generator=g).tolist()
    cut = round(0.7 * n)
    return Universe(
        name="synthetic",
        tasks=tasks,
        meta_train=tuple(order[:cut]),
        meta_test=tuple(order[cut:]),
        held_out_concepts=("attribute 0",),
        image_features=FeatureTable(image_keys, image_x, source="synthetic images"),
        text_features=FeatureTable(text_keys, torch.stack(text_rows), source="synthetic texts"),
        info={"seed": seed, "dim": dim},
    )
