"""Zero-shot weights for new questions from a trained run: the library function behind `hyperguide generate`.

    from hyperguide.generate import generate
    out = generate("runs/easyvqa-random", ["is there a purple shape?"], [["yes", "no"]],
                   method="hnet+hyperldm@1", images=["shape.png"])
    out.weights        # (1, P) flat adapter weights, [W1, W2, b1, b2] (see models/adapter.py)
    out.predictions    # [["yes"]]: the answer the generated adapter picks for each image
    out.save("generated/")  # weights.safetensors + generated.json

The question (and its answers) are embedded with the frozen encoders of the run's universe (`Encoders`, from its
source in `hyperguide.universes`), the method's trained parts are loaded from the run folder, and the weights are
the method's zero-shot answer: nothing is fine-tuned and no label is used. Images are embedded with the universe's
image encoder (easyvqa: its image tower), or given directly as features (one or the other, never both).

One code path answers: a `Generator` (a row's model loader, the encoders, the universe's known questions) turns
questions into weights and predictions. `run_generator` opens one on a run folder; an exported folder opens one
with `hyperguide.bundle.load_generator`, with the same weights bit for bit.

Everything is checked before it is used: the method's checkpoints carry the fingerprint the run's config.json
expects and their recorded sha256 (`trained.loading.load_row_shaped`); features are a finite float (N >= 1, D) tensor
whose rows' L2 norms are at most `MAX_FEATURE_NORM`; answers are distinct; a question or answer longer than the text
encoder reads is refused, never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hyperguide.config import RunConfig
from hyperguide.data.batch import collate
from hyperguide.data.tasks import Task
from hyperguide.errors import HyperguideError
from hyperguide.eval.results import read_results
from hyperguide.io import read_tensors, write_json, write_tensors
from hyperguide.meta.methods import Method
from hyperguide.models.adapter import AdapterShape, adapter_logits
from hyperguide.rows import Row, find_row, parse_row
from hyperguide.trained.folder import RunFolder, run_folds
from hyperguide.trained.loading import adapter_shape_for, check_trained_on, load_row_shaped
from hyperguide.universes import Encoders, UniverseOptions, load_universe, load_universe_structure, universe_encoders

FEATURES_KEY = "features"
# The largest L2 norm of a features row given to `generate`: easyvqa's image tower gives norms of 2 to 43. Far above,
# the adapter's output squares past float32's range in its normalisation, which then gives 0 (every answer alike).
MAX_FEATURE_NORM = 1e6


@dataclass
class Generated:
    method: str
    questions: list[str]
    answers: list[list[str]]
    shape: AdapterShape
    weights: torch.Tensor  # (B, P); an ensemble row's (B, members, P)
    predictions: list[list[str]] | None = None  # per question, the chosen answer for each image
    probabilities: list[torch.Tensor] | None = None  # per question, (n_images, K)
    inputs: list[str] | None = None  # what each prediction is of: the image files, or the feature file's rows

    def save(self, out_dir: str | Path) -> Path:
        """`weights.safetensors` (one (P,) tensor per question, `q0`, `q1`, ...; (members, P) for an ensemble, whose
        answer is its members' mean logits) and `generated.json`."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise HyperguideError(f"--out {out} is a file, not a folder: give a folder for the generated files")
        write_tensors(out / "weights.safetensors", {f"q{i}": w for i, w in enumerate(self.weights)})
        record: dict[str, Any] = {
            "method": self.method,
            "adapter": {"feature_dim": self.shape.feature_dim, "hidden_dim": self.shape.hidden_dim},
            "layout": "flat [W1 (H x D), W2 (D x H), b1 (H), b2 (D)]",
            "members": 1 if self.weights.ndim == 2 else int(self.weights.shape[1]),
            "questions": [
                {"key": f"q{i}", "question": q, "answers": a}
                for i, (q, a) in enumerate(zip(self.questions, self.answers, strict=True))
            ],
        }
        if self.predictions is not None and self.probabilities is not None:
            record["inputs"] = self.inputs
            for entry, preds, probs in zip(record["questions"], self.predictions, self.probabilities, strict=True):
                entry["predictions"] = preds
                entry["probabilities"] = [[round(float(p), 4) for p in row] for row in probs]
        write_json(out / "generated.json", record)
        return out


def best_conditional_row(run_dir: Path) -> str:
    """The run's headline guidance row when a tune run chose it (results.json's `headline`, chosen without
    meta-test); else its question-conditioned zero-shot row of highest mean zero-shot accuracy (retrieval
    references and rows that use support labels left out)."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise HyperguideError(f"{run_dir} has no results.json to pick the best method from: pass --method ROW")
    results = read_results(path)
    headline = results.get("headline")
    if headline and headline.get("chosen_on") and headline.get("guidance") in results["methods"]:
        return str(headline["guidance"])
    rows = {}
    for name, m in results["methods"].items():
        row = find_row(name)
        generator = row is not None and row.spec.reads_question and row.spec.kind != "reference"  # not retrieval
        if generator and not m.get("uses_support_labels"):
            rows[name] = m["zero_shot"]["acc"]["mean"]
    if not rows:
        raise HyperguideError(f"{path} has no question-conditioned method; pass --method ROW")
    return max(rows, key=lambda r: rows[r])


def _read_features(path: str | Path, dim: int) -> torch.Tensor:
    tensors = read_tensors(path, what="image features")  # refuses NaN and infinity
    if FEATURES_KEY not in tensors:
        raise HyperguideError(
            f"{path} has no tensor {FEATURES_KEY!r} (an (N, {dim}) float tensor); it has {list(tensors)}"
        )
    return _check_features(tensors[FEATURES_KEY], dim, str(path))


def _check_features(features: torch.Tensor, dim: int, source: str) -> torch.Tensor:
    if not features.is_floating_point():
        raise HyperguideError(f"{source}: features of dtype {features.dtype}, expected a float tensor")
    if features.ndim != 2 or features.shape[1] != dim or features.shape[0] == 0:
        raise HyperguideError(f"{source}: features of shape {tuple(features.shape)}, expected (N, {dim}) with N >= 1")
    if not bool(torch.isfinite(features).all()):
        raise HyperguideError(f"{source}: features hold NaN or infinity")
    norms = features.double().norm(dim=-1)  # float64: a float32 row of 1e30s has a norm, not infinity
    if bool((norms > MAX_FEATURE_NORM).any()):
        row = int(norms.argmax())
        raise HyperguideError(
            f"{source}: features row {row} has L2 norm {float(norms[row]):.3g}, more than {MAX_FEATURE_NORM:.0e}: "
            "far from what an image encoder gives (norms of about 1 to 100), and beyond what the adapter computes "
            "in float32 (its normalised output would be 0 and every answer equally likely); are they the right "
            "features, at their encoder's scale?"
        )
    return features.float()


ModelLoader = Callable[[int, int], Method]  # (feature_dim, question_dim) -> the row's model, trained parts loaded


@dataclass
class Generator:
    """A question-conditioned row's trained model with the frozen encoders it was trained with: new questions in,
    adapter weights (and, given images or features, predictions) out. `run_generator` opens one on a run folder,
    `hyperguide.bundle.load_generator` on an exported folder; both answer through the same `generate`.

    `known` maps each of the universe's own questions to {answer: prompt}, so that a known question keeps its
    answers and its prompts; `load` gives the row's model for the question embedding's size."""

    method: str
    universe: str
    encoders: Encoders
    known: Mapping[str, Mapping[str, str]]
    load: ModelLoader

    def generate(
        self,
        questions: Sequence[str],
        answers: Sequence[Sequence[str]] | None = None,
        *,
        images: Sequence[str | Path] | None = None,
        features: torch.Tensor | str | Path | None = None,
    ) -> Generated:
        """Adapter weights for each question; with `images` or `features`, the predicted answer of each.

        `answers[i]` are question i's candidate answers (one list for every question); when omitted, a question
        that is one of the universe's tasks gets that task's answers."""
        _one_input(images, features)
        questions = [q.strip() for q in questions]
        if not questions or not all(questions):
            raise HyperguideError("give at least one non-empty question")
        answer_lists = _answers_for(questions, answers, self.known, self.universe)
        encoders = self.encoders

        def prompt(question: str, answer: str) -> str:  # the universe's own prompt for its own tasks, else its rule
            own = self.known.get(question, {})
            return own[answer] if answer in own else encoders.prompt(question, answer)

        q_emb = encoders.texts(questions)
        q_tokens = encoders.question_tokens(questions)
        feature_dim = int(q_emb.shape[1])
        x: torch.Tensor | None = None
        inputs: list[str] | None = None
        if isinstance(features, (str, Path)):
            x = _read_features(features, feature_dim)
            inputs = [f"{features}[{i}]" for i in range(len(x))]
        elif features is not None:
            x = _check_features(features, feature_dim, "features")
            inputs = [f"features[{i}]" for i in range(len(x))]
        elif images:
            x = encoders.images(images)
            inputs = [str(p) for p in images]
        example = x[:1] if x is not None and len(x) else torch.zeros(1, feature_dim)
        tasks = []
        for question, emb, tokens, options_i in zip(questions, q_emb, q_tokens, answer_lists, strict=True):
            answer_emb = encoders.texts([prompt(question, a) for a in options_i])
            y = torch.zeros(1, dtype=torch.long)
            tasks.append(Task(question, tuple(options_i), emb, answer_emb, example, y, example, y, tokens))
        model = self.load(feature_dim, int(q_emb.shape[1]))
        batch = collate(tasks)
        with torch.no_grad():
            phi = model.zero_shot_phi(batch)
            weights = model.decoder(batch)(phi).detach()  # (B * members, P)
        members = model.members
        kept = weights if members == 1 else weights.view(len(tasks), members, -1)
        out = Generated(self.method, questions, [list(a) for a in answer_lists], model.shape, kept, inputs=inputs)
        if x is not None:
            out.predictions, out.probabilities = [], []
            for b, task in enumerate(tasks):
                with torch.no_grad():
                    mine = weights[b * members : (b + 1) * members]
                    logits = adapter_logits(
                        model.shape, mine, x.unsqueeze(0), task.answer_emb.unsqueeze(0), members=members
                    )
                probs = logits[0].softmax(-1)
                out.probabilities.append(probs)
                out.predictions.append([task.answers[int(i)] for i in probs.argmax(-1)])
        return out


def generate(
    run_dir: str | Path,
    questions: Sequence[str],
    answers: Sequence[Sequence[str]] | None = None,
    *,
    method: str | None = None,
    seed: int | None = None,
    fold: int = 0,
    images: Sequence[str | Path] | None = None,
    features: torch.Tensor | str | Path | None = None,
    options: UniverseOptions | None = None,
) -> Generated:
    """Adapter weights for each question from the run's `method` (default: its best question-conditioned row), trained
    with `seed` (default: the run's first) on `fold`; with `images` or `features`, the predicted answer of each.

    `answers[i]` are question i's candidate answers; when omitted, a question that is one of the universe's tasks gets
    that task's answers."""
    _one_input(images, features)  # before anything is loaded
    generator = run_generator(run_dir, method=method, seed=seed, fold=fold, options=options)
    return generator.generate(questions, answers, images=images, features=features)


def run_generator(
    run_dir: str | Path,
    *,
    method: str | None = None,
    seed: int | None = None,
    fold: int = 0,
    options: UniverseOptions | None = None,
) -> Generator:
    """The `Generator` of a run folder's row `method` (default: its best question-conditioned row), trained with
    `seed` (default: the run's first) on `fold`, with the encoders of the run's universe (`options` says where it is
    prepared). The row's checkpoints are checked and loaded when it first generates."""
    run_dir = Path(run_dir)
    config = RunFolder(run_dir).read_config()
    options = options or UniverseOptions()
    row = generator_row(method or best_conditional_row(run_dir), config)
    chosen = config.seeds[0] if seed is None else seed
    check_trained(row, config, RunFolder(run_dir), chosen, fold)
    data = prepared_data(config, RunFolder(run_dir), options)
    known = known_tasks(config, options)
    encoders = universe_encoders(config.universe, options, prompts=config.prompts)

    def load(feature_dim: int, question_dim: int) -> Method:
        shape = adapter_shape_for(feature_dim, config)
        return load_row_shaped(row, shape, question_dim, config, RunFolder(run_dir), chosen, fold, data).method.eval()

    return Generator(row.name, config.universe, encoders, known, load)


def prepared_data(config: RunConfig, folder: RunFolder, options: UniverseOptions) -> str:
    """The fingerprint of the run's universe as prepared here, refused unless the run was trained on it: its
    encoders would embed questions and images in a space the run never saw (a task file other than the run's,
    easyvqa prepared again with another seed)."""
    universe = load_universe(config.universe, options, prompts=config.prompts)
    return check_trained_on(universe, folder, config, options.folder(config.universe))


def _one_input(images: Sequence[str | Path] | None, features: torch.Tensor | str | Path | None) -> None:
    if images and features is not None:
        raise HyperguideError("give images or features, not both (whose answers would be printed under which names?)")


def check_trained(row: Row, config: RunConfig, folder: RunFolder, seed: int, fold: int) -> None:
    """Refuse a seed or a fold that the run never trains, naming those it does (retraining would not make it: the
    run's config has no such seed or fold). A row whose checkpoints of that seed and fold are there is let through
    (a run whose config.json lists fewer seeds than it trained)."""
    if all(folder.stem(stage, seed, fold).with_suffix(".json").is_file() for stage in row.spec.stages):
        return
    if seed not in config.seeds:
        raise HyperguideError(
            f"run {folder.path} has no seed {seed}: it trains seeds {list(config.seeds)}; give one of them (--run-seed)"
        )
    folds = run_folds(config)
    if fold not in folds:
        split = f"{config.split} split" + ("" if config.tune_folds is None else f", tune_folds={config.tune_folds}")
        raise HyperguideError(
            f"run {folder.path} has no fold {fold}: it trains folds {folds} ({split}); give one of them (--fold)"
        )


def generator_row(name: str, config: RunConfig) -> Row:
    """The row `name`, which must read the question and use no support labels: a zero-shot generator."""
    row = parse_row(name)
    if row.spec.labels_used(config) or not row.spec.reads_question:
        kind = "uses support labels" if row.spec.labels_used(config) else "does not read the question"
        raise HyperguideError(f"method {name!r} {kind}; generate needs a question-conditioned zero-shot method")
    return row


def known_tasks(config: RunConfig, options: UniverseOptions) -> dict[str, dict[str, str]]:
    """{question: {answer: prompt}} of every task of the run's universe (its structure: no features needed)."""
    universe = load_universe_structure(config.universe, options, prompts=config.prompts)
    return {t.question: dict(zip(t.answers, t.prompts, strict=True)) for t in universe.tasks}


def _answers_for(
    questions: list[str],
    answers: Sequence[Sequence[str]] | None,
    known: Mapping[str, Mapping[str, str]],
    universe: str,
) -> list[list[str]]:
    if answers is not None:
        if len(answers) == 1 and len(questions) > 1:
            answers = list(answers) * len(questions)
        if len(answers) != len(questions):
            raise HyperguideError(f"{len(questions)} questions but {len(answers)} answer lists")
        out = [[a.strip() for a in lst if a.strip()] for lst in answers]
        for q, lst in zip(questions, out, strict=True):
            if len(lst) < 2:
                raise HyperguideError(f"question {q!r} needs at least two candidate answers, got {lst}")
            if len(set(lst)) != len(lst):
                repeated = sorted({a for a in lst if lst.count(a) > 1})
                raise HyperguideError(f"question {q!r}: candidate answers must be distinct, {repeated} repeat")
        return out
    missing = [q for q in questions if q not in known]
    if missing:
        raise HyperguideError(f"no answers for {missing}, which are not tasks of {universe}: pass --answers")
    return [list(known[q]) for q in questions]
