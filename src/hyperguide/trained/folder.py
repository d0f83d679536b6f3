"""A run folder: where every file of a run lives, and its `config.json`.

<run>/config.json                                  the resolved RunConfig (written before anything else)
<run>/<stage>/seed<S>-fold<F>.safetensors + .json  one checkpoint per stage, seed and fold (JSON last: done)
<run>/<stage>/seed<S>-fold<F>.metrics.jsonl        the stage's training log, one record per epoch
<run>/results.json, results.md, *.png              the evaluation and the report

Every file is written by rename (`io.atomic_path`) or, for the logs, created exclusively without following a link;
a stage folder that is a symlink is refused, so nothing a run writes lands outside its folder. Temporaries that a
killed run left are swept when the next run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperguide.config import RunConfig, from_dict, to_dict, training_view
from hyperguide.errors import HyperguideError
from hyperguide.io import read_json, sweep_temporaries, write_json
from hyperguide.rows import method_of

CONFIG = "config.json"
RESULTS = "results.json"
GENERATOR_FORMAT = "hyperguide-generator"  # the `format` of an exported generator's config.json (hyperguide.bundle)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def stem(self, stage: str, seed: int, fold: int) -> Path:
        """A stage checkpoint's path without its suffix (`.safetensors`, `.json`)."""
        folder = self.path / stage
        if folder.is_symlink():
            raise HyperguideError(f"{folder} is a symlink: a run's stage folders must be its own (remove the link)")
        return folder / f"seed{seed}-fold{fold}"

    def metrics(self, stage: str, seed: int, fold: int) -> Path:
        stem = self.stem(stage, seed, fold)
        return stem.with_name(f"{stem.name}.metrics.jsonl")

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    def _read_config_data(self) -> dict[str, Any]:
        path = self.path / CONFIG
        data = read_json(path, what="run config")
        if not isinstance(data, dict):
            raise HyperguideError(f"{path} is not a run config (a JSON object)")
        if data.get("format") == GENERATOR_FORMAT:  # its keys are not a run's: say what the folder is instead
            raise HyperguideError(
                f"{self.path} is an exported generator (hyperguide export), not a run folder: use hyperguide generate "
                f"{self.path} QUESTION --answers ANSWER ANSWER, or give a run folder (one bench or train wrote)"
            )
        return upgrade(data)

    def read_config(self) -> RunConfig:
        return from_dict(RunConfig, self._read_config_data(), where=str(self.path / CONFIG))

    def write_config(self, config: RunConfig) -> RunConfig:
        """Write config.json, or check that the folder's existing one is the same run. A run folder gathers the
        methods trained into it: a config that differs only in its methods adds them; one that differs only in
        evaluation-only knobs (`config.training_view`; not its seeds) replaces them, so the run is evaluated again
        with them.
        Returns the folder's config."""
        path = self.path / CONFIG
        data = to_dict(config)
        if self.path.exists() and not self.path.is_dir():
            raise HyperguideError(f"{self.path} is a file, not a run folder: give another --out")
        if not path.is_file():
            write_json(path, data)
            sweep_temporaries(self.path)
            return config
        existing = self._read_config_data()
        methods = list(dict.fromkeys([*(existing.get("methods") or []), *data["methods"]]))
        # what the folder's checkpoints and their list are made of: training knobs, and the seeds it holds
        old = {**training_view(from_dict(RunConfig, {**existing, "methods": methods}, where=str(path))),
               "seeds": existing.get("seeds")}  # fmt: skip
        new = {**training_view(from_dict(RunConfig, {**data, "methods": methods}, where="the new config")),
               "seeds": data.get("seeds")}  # fmt: skip
        if old != new:
            changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            raise HyperguideError(
                f"{self.path} holds a run with a different config (differs in: {', '.join(changed)}); "
                "use another --out folder"
            )
        if {**data, "methods": methods} != read_json(path, what="run config"):  # more methods, or an upgrade
            write_json(path, {**data, "methods": methods})
        sweep_temporaries(self.path)  # what killed runs left half-written (a live writer's are locked and kept)
        return from_dict(RunConfig, {**data, "methods": methods}, where=str(path))


def run_folds(config: RunConfig) -> list[int]:
    """The folds a run trains: kfold's, the tuning folds, or the one fold of random and compositional."""
    if config.split == "concepts":
        return list(range(config.tune_folds or len(config.held_out)))  # the run's config lists them (resolved)
    return list(range(config.tune_folds or (config.folds if config.split == "kfold" else 1)))


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config.json of an older version as this version writes it: `methods` listed table rows (`X@G`), which
    are now methods whose rows follow `hyperldm.gammas`; `train.log_every` did nothing and is gone."""
    data = dict(data)
    if isinstance(data.get("train"), dict) and "log_every" in data["train"]:
        data["train"] = {k: v for k, v in data["train"].items() if k != "log_every"}
    if isinstance(data.get("methods"), list):
        data["methods"] = list(dict.fromkeys(_method_name(m) for m in data["methods"]))
    return data


def _method_name(name: Any) -> Any:
    """The method a name stands for; a name the registry does not know is left for the config's checks."""
    try:
        return method_of(name).name if isinstance(name, str) else name
    except HyperguideError:
        return name
