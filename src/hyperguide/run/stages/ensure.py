"""Running a stage: `ensure_stage` trains it (after the stages it needs) unless its checkpoint exists with the
fingerprint the run expects, seeded from its own identity (name, seed, fold), so that a resumed run gives the same
numbers as an uninterrupted one and a stage's result does not depend on which other stages or rows a run has.

Every stage writes one checkpoint `<run>/<stage>/seed<S>-fold<F>.safetensors` + `.json` (the JSON last: it marks the
stage done) and a `.metrics.jsonl` log that grows as it trains. Under torchrun every process runs every stage on its
share of each batch (`hyperguide.distributed`); the main process decides which stages to run and writes their
checkpoints, and the others wait for it before going on.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import replace
from typing import Any, cast

import torch

from hyperguide import distributed
from hyperguide.checkpoint import checkpoint_problem, save_checkpoint, save_tensors
from hyperguide.config import RunConfig, to_dict, training_view
from hyperguide.errors import HyperguideError
from hyperguide.events import Note, StageFinished, StageStarted, emit
from hyperguide.io import non_finite
from hyperguide.run.stages.context import StageBody, StageContext
from hyperguide.train.loop import NonFiniteLoss
from hyperguide.trained.stage_table import StageSpec, run_seed, stage, stage_config, stage_fingerprint, stage_identity


def stage_body(spec: StageSpec) -> StageBody:
    """The function that trains `spec`, imported from its `body` ("module:function")."""
    module, _, name = spec.body.partition(":")
    try:
        body = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise HyperguideError(f"stage {spec.name!r}: cannot import its body {spec.body!r} ({e})") from None
    if not callable(body):
        raise HyperguideError(f"stage {spec.name!r}: its body {spec.body!r} is not a function")
    return cast(StageBody, body)


def learning_rates(name: str, config: RunConfig) -> list[str]:
    """`key = value` of each learning rate (a training knob `lr`, nested ones included) of the config sections that
    shape stage `name` itself (its `shaped_by`; none for a stage that declares nothing)."""
    view = training_view(stage_config(name, config))

    def walk(prefix: str, node: Any) -> list[str]:
        if not isinstance(node, dict):
            return []
        rates = [f"{prefix}lr = {node['lr']}"] if "lr" in node and not isinstance(node["lr"], dict) else []
        return rates + [r for key, value in node.items() for r in walk(f"{prefix}{key}.", value)]

    return [r for section in stage(name).shaped_by or () for r in walk(f"{section}.", view.get(section))]


def divergence_hint(name: str, config: RunConfig) -> str:
    """A guess at why stage `name`'s training diverged, for `NonFiniteLoss.hinted`: its own learning rate, or, for a
    stage trained on earlier stages' output, values those stages produced (finite but extreme: an HNet meta-trained
    at too high a `train.lr` gives latents that make the HVAE's first loss NaN)."""
    own = learning_rates(name, config)
    hint = f"is {' or '.join(own)} too high for it?" if own else "is a learning rate too high for it?"
    upstream, todo = [], list(stage(name).deps)
    while todo:
        dep = todo.pop(0)
        if dep not in upstream:
            upstream.append(dep)
            todo += stage(dep).deps
    if not upstream:
        return hint
    chain = ", computed from ".join(
        f"stage {dep}" + (f", at {' and '.join(rates)}" if (rates := learning_rates(dep, config)) else "")
        for dep in upstream
    )
    return f"{hint} Or the cause may lie upstream, in what it trains on: the output of {chain}"


def ensure_stage(name: str, ctx: StageContext) -> dict[str, float]:
    """Run the stage (after its dependencies) unless its checkpoint exists with the fingerprint this run expects
    (one that differs is retrained, with a note saying why); returns seconds spent per stage run."""
    spec = stage(name)
    spent: dict[str, float] = {}
    for dep in spec.deps:
        spent.update(ensure_stage(dep, ctx))
    stem = ctx.stem(name)
    fingerprint = stage_fingerprint(name, ctx.config, ctx.folder, ctx.seed, ctx.split.fold, ctx.data)
    main = distributed.world().main
    expect = stage_identity(name, ctx.seed, ctx.split.fold)
    problem = distributed.share(checkpoint_problem(stem, fingerprint, expect=expect) if main else None)  # main decides
    if problem is None:
        return spent
    where = f"stage {name}, seed {ctx.seed}, fold {ctx.split.fold}"
    if main and stem.with_suffix(".json").is_file():
        emit(ctx.callbacks, Note(f"retraining {where}: {problem}"))
        stem.with_suffix(".json").unlink()  # no longer trusted, whatever happens next
    emit(ctx.callbacks, StageStarted(name, ctx.seed, ctx.split.fold, len(ctx.split.train)))
    ctx = replace(ctx, config=stage_config(name, ctx.config), chain=spec.chain, spec=spec)
    s = run_seed(name, ctx.seed, ctx.split.fold)
    torch.manual_seed(s)
    generator = torch.Generator().manual_seed(s)
    start = time.perf_counter()
    try:
        out = stage_body(spec)(ctx, generator)
    except NonFiniteLoss as e:
        raise HyperguideError(f"{where}: {e.hinted(divergence_hint(name, ctx.config))}") from None
    bad = non_finite(dict(out.module.state_dict()) if out.module is not None else out.tensors)
    if bad is not None:
        raise HyperguideError(
            f"{where}: the trained {bad!r} holds NaN or infinity (the training diverged); nothing saved"
        )
    elapsed = time.perf_counter() - start
    metadata = {
        "stage": name,
        "seed": ctx.seed,
        "fold": ctx.split.fold,
        "run_seed": s,
        "train_seconds": elapsed,
        "precision": ctx.config.precision,
        **out.metadata,
        "config": to_dict(ctx.config),
    }
    if main:  # under torchrun the processes hold the same model: the main one writes it, the others wait for it
        if out.module is not None:
            save_checkpoint(stem, out.module, metadata, fingerprint)
        else:
            save_tensors(stem, out.tensors, metadata, fingerprint)
    distributed.barrier()
    emit(ctx.callbacks, StageFinished(name, ctx.seed, ctx.split.fold, elapsed))
    spent[name] = elapsed
    return spent
