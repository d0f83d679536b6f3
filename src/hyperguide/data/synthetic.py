"""A tiny, deterministic, learnable universe for unit tests and smoke runs; built in memory, no encoders.

Images have one value for each of `n_attributes` attributes; an image's feature is the sum of its values' prototype
vectors plus noise. Task "which value of attribute a?" (several tasks per attribute, each over a subset of values)
scores images against answer embeddings that are the prototypes seen through a fixed random rotation mixed with the
prototypes themselves: the identity adapter is better than chance, a learned adapter (shared across tasks) is better
still. A question's embedding is its attribute's code plus a little per-task noise, so conditioning can help.

Each question also has token states (`Universe.question_tokens`): 4 to 7 tokens whose mean is exactly its embedding,
spread around it by zero-mean noise and a per-variant code on its second token. They come from a second generator
(seeded from `seed`), so every other tensor of the universe is what it was before tokens existed.
"""

from __future__ import annotations

import torch

from hyperguide.data.features import FeatureTable
from hyperguide.data.tasks import TaskSpec, Universe
from hyperguide.data.tokens import TokenTable

TOKEN_SEED_OFFSET = 7919  # the token generator's seed is seed + this, apart from the main stream


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
    token_rows: list[torch.Tensor] = []
    g_tokens = torch.Generator().manual_seed(seed + TOKEN_SEED_OFFSET)
    variant_codes = torch.randn(tasks_per_attribute, dim, generator=g_tokens)
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
            token_rows.append(_question_tokens(text_rows[-1], variant_codes[j], 4 + j % 4, g_tokens))
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
        concepts=tuple(f"attribute {a}" for a in range(n_attributes)),
        image_features=FeatureTable(image_keys, image_x, source="synthetic images"),
        text_features=FeatureTable(text_keys, torch.stack(text_rows), source="synthetic texts"),
        question_tokens=TokenTable.from_rows([t.question for t in tasks], token_rows, source="synthetic tokens"),
        info={"seed": seed, "dim": dim},
    )


def _question_tokens(emb: torch.Tensor, variant: torch.Tensor, length: int, g: torch.Generator) -> torch.Tensor:
    """(length, D) token states whose mean is `emb`: noise and the variant's code on token 1, centred, plus `emb`."""
    spread = 0.5 * torch.randn(length, emb.shape[0], generator=g)
    spread[1] += variant
    return emb + (spread - spread.mean(0))


def concepts_universe(
    *,
    n_concepts: int = 8,
    variants: int = 3,
    n_images: int = 600,
    examples_per_task: int = 60,
    dim: int = 32,
    present: float = 0.3,
    noise: float = 0.3,
    seed: int = 0,
) -> Universe:
    """Yes/no questions about concepts, in one space shared by questions and images: the test bed of the pointer.

    Concept c is a direction e_c (orthonormal to every other direction of the universe). An image shows each concept
    with probability `present`: its feature is 3 e_c summed over what it shows, plus a brightness offset along a
    direction o of its own scale and noise. "is concept c present (variant j)?" and "is concept c absent (variant
    j)?" are answered yes or no; their embeddings are e_c, plus a negation code n for "absent", a variant code and
    noise, so a question points at its concept among the images. Held out under `compositional` (`concept 6`,
    `concept 7`), a concept's direction is outside the span of every meta-train question: a learned map from the
    question to the weights has never emitted it, a path from the question's own embedding to the weights has.
    """
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    directions = basis.T  # orthonormal rows
    concepts, negation, brightness = directions[:n_concepts], directions[n_concepts], directions[n_concepts + 1]
    answer_vectors = directions[n_concepts + 2 : n_concepts + 4]  # "yes", "no"
    variant_codes = 0.2 * directions[n_concepts + 4 : n_concepts + 4 + variants]

    shows = torch.rand(n_images, n_concepts, generator=g) < present  # (N, C)
    scale = 1.0 + torch.rand(n_images, 1, generator=g)
    image_x = (
        3.0 * shows.float() @ concepts + scale * 2.0 * brightness + noise * torch.randn(n_images, dim, generator=g)
    )
    image_keys = [f"img{i}" for i in range(n_images)]

    tasks: list[TaskSpec] = []
    text_keys, text_rows = ["yes", "no"], [answer_vectors[0], answer_vectors[1]]
    for c in range(n_concepts):
        for negated in (False, True):
            for j in range(variants):
                question = f"is concept {c} {'absent' if negated else 'present'} (variant {j})?"
                picked = torch.randperm(n_images, generator=g)[:examples_per_task].tolist()
                labels = [int(bool(shows[i, c]) == negated) for i in picked]  # 0: yes, 1: no
                cut = int(0.7 * len(picked))
                tasks.append(
                    TaskSpec(
                        question=question,
                        answers=("yes", "no"),
                        prompts=("yes", "no"),
                        support_images=tuple(image_keys[i] for i in picked[:cut]),
                        support_labels=tuple(labels[:cut]),
                        query_images=tuple(image_keys[i] for i in picked[cut:]),
                        query_labels=tuple(labels[cut:]),
                    )
                )
                code = concepts[c] + (negation if negated else 0.0) + variant_codes[j]
                text_keys.append(question)
                text_rows.append(code + 0.05 * torch.randn(dim, generator=g))

    order = torch.randperm(len(tasks), generator=g).tolist()
    cut = round(0.7 * len(tasks))
    return Universe(
        name="synthetic-concepts",
        tasks=tasks,
        meta_train=tuple(order[:cut]),
        meta_test=tuple(order[cut:]),
        held_out_concepts=("concept 6", "concept 7"),
        concepts=tuple(f"concept {c}" for c in range(n_concepts)),
        image_features=FeatureTable(image_keys, image_x, source="synthetic concept images"),
        text_features=FeatureTable(text_keys, torch.stack(text_rows), source="synthetic concept texts"),
        info={"seed": seed, "dim": dim},
        shared_space=True,
    )
