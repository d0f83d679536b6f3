"""The stage bodies of the HNet's chain (`latents`, `hvae`, `question-bank`) and of the rows meta-trained as a whole;
the table that declares them is `trained.stage_table`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from hyperguide.data.tasks import Task
from hyperguide.eval.fit import latent_scores, mean
from hyperguide.eval.scoring import evaluate_method
from hyperguide.events import Note, emit
from hyperguide.meta.collect import collect_latents
from hyperguide.meta.hvae import train_hvae
from hyperguide.meta.meta_training import train_method
from hyperguide.meta.methods import Method
from hyperguide.meta.retrieval import question_bank
from hyperguide.meta.spaces import HNetSpace, HVAESpace
from hyperguide.models.vae import WeightVAE
from hyperguide.rows import Row, row_spec
from hyperguide.run.stages.context import StageContext, StageOutput
from hyperguide.trained.loading import question_dim


def _at_most(task: Task, limit: int | None, generator: torch.Generator) -> Task:
    """The task with at most `limit` of its support examples, drawn at random (all of them for None)."""
    if limit is None:
        return task
    keep = torch.randperm(len(task.support_y), generator=generator)[:limit].sort().values
    return replace(task, support_x=task.support_x[keep], support_y=task.support_y[keep])


def _method_fit(ctx: StageContext) -> Callable[[Method], dict[str, float]]:
    """The fit of a meta-trained method on its meta-train tasks' query sets: for MAML first the accuracy after its
    inner loop on at most `train.max_examples` support examples per task, as meta-training adapts
    (`fit_adapted_acc`, what MAML trains for), then for every method its zero-shot accuracy (`fit_acc`)."""
    generator = torch.Generator().manual_seed(0)
    limit = ctx.config.train.max_examples
    adapted_tasks = [_at_most(t, limit, generator) for t in ctx.train_tasks]

    def measure(method: Method) -> dict[str, float]:
        batch = ctx.config.eval.batch_size
        out = {}
        if method.trained_by == "maml":
            adapted = evaluate_method(
                method, adapted_tasks, finetune=ctx.config.method.inner, batch_size=batch, device=ctx.device
            )
            out["fit_adapted_acc"] = mean(adapted["acc"])
        out["fit_acc"] = mean(evaluate_method(method, ctx.train_tasks, batch_size=batch, device=ctx.device)["acc"])
        return out

    return measure


def meta_training_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    """A row trained as a whole (its one stage is its own name), by its `meta_loss`."""
    spec = row_spec(ctx.running.name)
    method = Row(spec).build(ctx.shape, question_dim(ctx.tasks), ctx.config)
    measure = _method_fit(ctx)
    train_method(
        method,
        ctx.train_tasks,
        ctx.config.train,
        generator=generator,
        name=spec.name,
        device=ctx.device,
        probing=ctx.probing(measure),
        callbacks=ctx.callbacks,
    )
    return StageOutput(method, metadata={"method": spec.name, **measure(method)})  # train_method left it in eval


def collect_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    cfg = ctx.config.collect
    latents = collect_latents(
        ctx.load_base(),
        ctx.train_tasks,
        n_aug=cfg.n_aug,
        inner=cfg.inner,
        generator=generator,
        batch_size=cfg.batch_size,
        max_examples=cfg.max_examples,
        device=ctx.device,
        callbacks=ctx.callbacks,
    )
    return StageOutput(
        tensors={"latents": latents, "tasks": torch.tensor(ctx.split.train)}, metadata={"n_aug": cfg.n_aug}
    )


def hvae_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    # The gate (docs/design.md §P3, step 3): the decoded encoder mean of each meta-train task's weights (its first
    # augmentation's) must score nearly what the weights themselves score on the task.
    base, latents = ctx.load_base(), ctx.load_latents()
    z = latents[0].to(ctx.device)
    hnet = mean(latent_scores(HNetSpace(base), ctx.train_tasks, z, device=ctx.device)["acc"])

    def measure(vae: WeightVAE) -> dict[str, float]:
        space = HVAESpace(base, vae).to(ctx.device)
        decoded = mean(latent_scores(space, ctx.train_tasks, space.from_hnet_latents(z)[0], device=ctx.device)["acc"])
        return {"fit_gate": 100.0 * decoded / hnet, "fit_decoded_acc": decoded}

    vae, _ = train_hvae(
        base, latents, ctx.config.hvae, generator=generator, device=ctx.device, probing=ctx.probing(measure),
        callbacks=ctx.callbacks,
    )  # fmt: skip
    fit = measure(vae)
    gate = {"hnet_acc": hnet, "decoded_acc": fit["fit_decoded_acc"], "gate_ratio": fit["fit_gate"]}
    emit(
        ctx.callbacks,
        Note(f"hvae: decoded encoder means score {gate['decoded_acc']:.1f}% on meta-train tasks, HNet(z) {hnet:.1f}%"),
    )
    return StageOutput(vae, metadata=gate)


def question_bank_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    """Nothing to train: the meta-train tasks' adapted HNet latents and question embeddings, for `nearest-question`."""
    return StageOutput(question_bank(ctx.load_latents(), ctx.train_tasks))
