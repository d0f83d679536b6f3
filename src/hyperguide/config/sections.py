"""Every setting of a run, one frozen dataclass per component, nested in `RunConfig`; each knob has a help line.

The defaults are the paper's (its code's defaults, `docs/design.md` §4.1) unless a field says otherwise; the
presets under `configs/` (`default`: the bench's, sized for about 40 minutes on 2 CPU cores; `quick`: smoke runs)
change some of them. `hyperguide config` lists the resolved tree.

Every field is checked when its dataclass is built (`__post_init__`, one `require(ok, field, what is right, value)`
per rule), so no out-of-range, non-finite or empty value reaches a run: `from_dict` reports a refusal as
`config.<section>.<field>: must be ..., got ...`. A new field gets its own `require` line. A knob that only changes
how trained models are used (sampling, guidance, the table's sweep) is marked `evaluation_only=True`: checkpoints'
fingerprints leave it out, so changing it retrains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hyperguide.config.typed import at_least, knob, positive, require

QuestionMode = Literal["pooled", "attention"]
Prediction = Literal["eps", "x0", "v"]  # what a diffusion denoiser outputs (diffusion/ddpm.py)
Condition = Literal["concat", "film"]  # how the HyperLDM denoiser reads its condition (models/denoiser.py)
SplitKind = Literal["random", "compositional", "kfold", "concepts"]
PromptStyle = Literal["declarative", "answer"]  # this order is the order of prepared texts
Precision = Literal["fp32", "tf32", "bf16"]  # the arithmetic a run computes in (config/precision.py)


@dataclass(frozen=True)
class InnerLoop:
    """How a task adapts: `steps` full-batch steps of `optimizer` at `lr` (paper: 10 SGD steps at 0.1)."""

    steps: int = knob(10, help="optimiser steps per task (on its support set, or on the guidance loss)")
    lr: float = knob(0.1, help="inner-loop learning rate")
    optimizer: Literal["sgd", "adam"] = knob("sgd", help="inner-loop optimiser: sgd or adam")
    first_order: bool = knob(
        True, help="MAML meta-training only: inner gradients as constants (the paper's first order)"
    )
    betas: tuple[float, float] = knob((0.9, 0.999), help="Adam's betas (inner optimiser adam)")
    eps: float = knob(1e-8, help="Adam's epsilon (inner optimiser adam)")

    def __post_init__(self) -> None:
        require(self.optimizer in ("sgd", "adam"), "optimizer", "'sgd' or 'adam'", self.optimizer)
        require(self.steps >= 0, "steps", ">= 0", self.steps)
        require(positive(self.lr), "lr", "a finite number > 0", self.lr)
        require(
            len(self.betas) == 2 and all(at_least(b, 0) and b < 1 for b in self.betas),
            "betas",
            "two numbers in [0, 1)",
            self.betas,
        )
        require(positive(self.eps), "eps", "a finite number > 0", self.eps)


@dataclass(frozen=True)
class MethodConfig:
    """Architecture and inner-loop settings shared by the methods (paper defaults)."""

    adapter_hidden: int | None = knob(None, help="adapter hidden width; null: a third of the feature dim (paper)")
    latent_dim: int = knob(128, help="HNet latent z dimension")
    hnet_hidden: tuple[int, ...] = knob((128, 128, 128), help="hidden widths of the hypernetworks (HNet, cond HNet)")
    film_hidden: int = knob(128, help="hidden width of cond-multitask-film's FiLM generator")
    question: QuestionMode = knob(
        "pooled", help="conditional baselines read the pooled question embedding (paper) or attention over tokens"
    )
    question_heads: int = knob(4, help="attention heads of the question encoder (question=attention)")
    pointer_rows: int = knob(
        0,
        omit_default=True,
        help="hidden units whose W1 rows the generator points along the question's embedding (models/pointer.py; "
        "the -pointer rows; needs a universe whose questions and images share a space); 0: none",
    )
    adapter_init: Literal["normal", "identity"] = knob(
        "normal", help="init of methods' own adapter weights: N(0, 1) (paper) or the identity adapter"
    )
    inner: InnerLoop = knob(help="MAML's inner loop during meta-training", factory=InnerLoop)
    oracle: InnerLoop = knob(
        help="the oracle bound: fine-tuning on the full support set",
        factory=lambda: InnerLoop(steps=100, lr=1e-2, optimizer="adam"),
        evaluation_only=True,
    )

    def __post_init__(self) -> None:
        require(
            self.adapter_hidden is None or self.adapter_hidden >= 1,
            "adapter_hidden",
            "null or >= 1",
            self.adapter_hidden,
        )
        require(self.latent_dim >= 1, "latent_dim", ">= 1", self.latent_dim)
        require(all(h >= 1 for h in self.hnet_hidden), "hnet_hidden", "widths >= 1", self.hnet_hidden)
        require(self.film_hidden >= 1, "film_hidden", ">= 1", self.film_hidden)
        require(self.question_heads >= 1, "question_heads", ">= 1", self.question_heads)
        require(self.pointer_rows >= 0, "pointer_rows", ">= 0", self.pointer_rows)


@dataclass(frozen=True)
class TrainConfig:
    """Meta-training of the baselines and the HNet (paper: Adam 1e-3, 32 tasks a step, clip 10, 1000 epochs)."""

    epochs: int = knob(100, help="meta-training epochs over the meta-train tasks")
    meta_batch_size: int = knob(32, help="tasks per outer step")
    lr: float = knob(1e-3, help="outer Adam learning rate")
    grad_clip: float = knob(10.0, help="clip the outer gradient's norm to this")
    swap_support_query: bool = knob(False, help="adapt on the query set, score on the support set (the reference code)")
    max_examples: int | None = knob(
        64, help="per task and set, a fresh random subset of this many examples each step (null: all)"
    )

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", ">= 1", self.epochs)
        require(self.meta_batch_size >= 1, "meta_batch_size", ">= 1", self.meta_batch_size)
        require(positive(self.lr), "lr", "a finite number > 0", self.lr)
        require(
            positive(self.grad_clip), "grad_clip", "a finite number > 0 (the largest gradient norm)", self.grad_clip
        )
        require(self.max_examples is None or self.max_examples >= 1, "max_examples", "null or >= 1", self.max_examples)


@dataclass(frozen=True)
class CollectConfig:
    """The adapted-latent dataset: augmented adaptations of every meta-train task from the meta-learned z0."""

    n_aug: int = knob(100, help="augmentations (random subsets, each adapted) per meta-train task")
    inner: InnerLoop = knob(help="the adaptation of z on each subset", factory=InnerLoop)
    batch_size: int = knob(128, help="tasks adapted together (larger batches amortise per-step overhead)")
    max_examples: int | None = knob(None, help="cap on a subset's size (null: the paper's 2/3-to-all subset)")

    def __post_init__(self) -> None:
        require(self.n_aug >= 1, "n_aug", ">= 1", self.n_aug)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(self.max_examples is None or self.max_examples >= 1, "max_examples", "null or >= 1", self.max_examples)


def _require_steps(epochs: int, min_steps: int) -> None:
    """A trainer over the latent dataset trains `epochs` epochs, at least `min_steps` steps: one must be >= 1."""
    require(epochs >= 0, "epochs", ">= 0", epochs)
    require(min_steps >= 0, "min_steps", ">= 0", min_steps)
    require(epochs + min_steps >= 1, "epochs", ">= 1, or min_steps >= 1 (a stage must train)", epochs)


@dataclass(frozen=True)
class HVAEConfig:
    """The HVAE, a VAE over adapter weights (paper: Adam 1e-4, batch 32, 10,000 epochs, KL weight 1, latent 128)."""

    hidden_dims: tuple[int, ...] = knob((128, 128), help="encoder hidden widths (the decoder mirrors them)")
    latent_dim: int = knob(128, help="latent u dimension")
    kl_weight: float = knob(1.0, help="weight of the KL term")
    lr: float = knob(1e-4, help="Adam learning rate")
    batch_size: int = knob(32, help="tasks per step")
    epochs: int = knob(10000, help="epochs over the meta-train tasks (one augmentation per task and epoch)")
    min_steps: int = knob(0, help="train at least this many steps, whatever the number of tasks")
    normalize: bool = knob(
        True, help="standardise the encoder's input and start the decoder at the mean weights (paper's option: off)"
    )

    def __post_init__(self) -> None:
        require(all(h >= 1 for h in self.hidden_dims), "hidden_dims", "widths >= 1", self.hidden_dims)
        require(self.latent_dim >= 1, "latent_dim", ">= 1", self.latent_dim)
        require(at_least(self.kl_weight, 0), "kl_weight", "a finite number >= 0", self.kl_weight)
        require(positive(self.lr), "lr", "a finite number > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _require_steps(self.epochs, self.min_steps)


@dataclass(frozen=True)
class HyperCLIPConfig:
    """HyperCLIP and its guidance (paper: Adam 1e-3, batch 32, 1,000 epochs; guidance 50 Adam steps at 1e-3)."""

    hidden_dims: tuple[int, ...] = knob((128, 128), help="hidden widths of the weight encoder")
    lr: float = knob(1e-3, help="Adam learning rate")
    batch_size: int = knob(32, help="tasks per contrastive batch")
    epochs: int = knob(1000, help="epochs over the meta-train tasks")
    min_steps: int = knob(0, help="train at least this many steps, whatever the number of tasks")
    guidance: InnerLoop = knob(
        help="zero-shot guidance: ascent of the latent towards the question",
        factory=lambda: InnerLoop(steps=50, lr=1e-3, optimizer="adam"),
        evaluation_only=True,
    )
    start: Literal["z0", "centroid", "retrieval"] = knob(
        "retrieval",
        help="guidance starts from the training latent HyperCLIP scores highest for the question (retrieval), the "
        "training latents' centroid, or the space's start (z0, paper)",
        evaluation_only=True,
    )
    guidance_step: float | None = knob(
        0.05,
        help="guidance lr as this fraction of the training latents' per-dimension spread (null: guidance.lr, paper)",
        evaluation_only=True,
    )
    span: int | None = knob(
        None, help="confine guidance to the centroid + this many principal axes of the latents", evaluation_only=True
    )
    normalize: bool = knob(True, help="standardise the weight tower's input by the training codes (paper: off)")
    init_l2: float = knob(
        10.0, help="weight of 1/2 ||x - x_start||^2 in the guidance loss (paper: 0)", evaluation_only=True
    )
    question: QuestionMode = knob("pooled", help="the text side: pooled question embedding or attention over tokens")
    question_heads: int = knob(4, help="attention heads of the question encoder (question=attention)")
    candidates: int = knob(10, help="the task-identification diagnostic picks the right question among this many")

    def __post_init__(self) -> None:
        require(all(h >= 1 for h in self.hidden_dims), "hidden_dims", "widths >= 1", self.hidden_dims)
        require(positive(self.lr), "lr", "a finite number > 0", self.lr)
        require(self.batch_size >= 2, "batch_size", ">= 2 (a contrastive batch compares tasks)", self.batch_size)
        _require_steps(self.epochs, self.min_steps)
        require(at_least(self.init_l2, 0), "init_l2", "a finite number >= 0", self.init_l2)
        require(self.question_heads >= 1, "question_heads", ">= 1", self.question_heads)
        require(self.candidates >= 2, "candidates", ">= 2", self.candidates)
        require(
            self.guidance_step is None or positive(self.guidance_step),
            "guidance_step",
            "null or > 0",
            self.guidance_step,
        )
        require(self.span is None or self.span >= 1, "span", "null or >= 1", self.span)


@dataclass(frozen=True)
class HyperLDMConfig:
    """HyperLDM, a conditional latent diffusion model (paper: 1,000 cosine steps, p_uncond 0.2, 200 epochs)."""

    num_steps: int = knob(1000, help="diffusion timesteps T")
    schedule: Literal["cosine", "linear"] = knob("cosine", help="noise schedule")
    target: Prediction = knob(
        "x0", help="what the denoiser predicts: x0 (the clean latent), v (the velocity) or eps (the noise, paper)"
    )
    hidden_dims: tuple[int, ...] = knob((128, 128), help="hidden widths of the MLP denoiser")
    time_dim: int = knob(100, help="timestep embedding dimension")
    condition: Condition = knob(
        "film", help="the condition modulates every denoiser block (film) or joins its input (concat, paper)"
    )
    cond_hidden: int = knob(128, help="width of the condition's learned projection (condition=film)")
    null: Literal["zeros", "learned"] = knob("zeros", help="the null condition: zeros (paper) or a learned vector")
    p_uncond: float = knob(0.2, help="probability of dropping the condition in training (classifier-free guidance)")
    epochs: int = knob(200, help="epochs over the meta-train tasks")
    min_steps: int = knob(5400, help="train at least this many steps (the paper's 200 epochs x 27 batches)")
    batch_size: int = knob(32, help="tasks per step")
    lr: float = knob(1e-3, help="Adam learning rate")
    ema_decay: float = knob(0.999, help="decay of the EMA of the denoiser's weights, which is what samples")
    sample_steps: int | None = knob(
        250,
        help="respaced sampling with this many steps, at most num_steps (null: all num_steps, paper)",
        evaluation_only=True,
    )
    start_frac: float | None = knob(
        None,
        help="start the reverse chain from the noised starting latent at this fraction of T (null: noise)",
        evaluation_only=True,
    )
    few_shot_scale: float = knob(
        0.0, help="few-shot guidance by the support-loss gradient (> 0 uses labels)", evaluation_only=True
    )
    gammas: tuple[float, ...] = knob(
        (0.0, 1.0, 1.5, 2.0, 4.0),
        help="guidance scales of the table's rows (0 unconditional, 1 conditional)",
        evaluation_only=True,
    )
    question: QuestionMode = knob("pooled", help="the condition: pooled question embedding or attention over tokens")
    question_heads: int = knob(4, help="attention heads of the question encoder (question=attention)")
    clip_x0: bool = knob(
        True, help="bound each sampling step's predicted x0 to the training latents' range", evaluation_only=True
    )
    ensemble: int = knob(
        1,
        help="zero-shot answers with the mean logits of this many samples per task (1: one sample)",
        evaluation_only=True,
    )
    classifier_scale: float = knob(
        3.0,
        help="the +hyperclip rows: each sampling step moves x0 up HyperCLIP's cosine to the question by this share "
        "of the latents' per-dimension spread, times sqrt(1 - alpha_bar) (0: classifier-free guidance alone)",
        evaluation_only=True,
    )

    def __post_init__(self) -> None:
        require(self.num_steps >= 1, "num_steps", ">= 1", self.num_steps)
        require(all(h >= 1 for h in self.hidden_dims), "hidden_dims", "widths >= 1", self.hidden_dims)
        require(self.time_dim >= 1, "time_dim", ">= 1", self.time_dim)
        require(at_least(self.p_uncond, 0) and self.p_uncond <= 1, "p_uncond", "a probability in [0, 1]", self.p_uncond)
        _require_steps(self.epochs, self.min_steps)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(positive(self.lr), "lr", "a finite number > 0", self.lr)
        require(at_least(self.ema_decay, 0) and self.ema_decay < 1, "ema_decay", "in [0, 1)", self.ema_decay)
        require(self.sample_steps is None or self.sample_steps >= 1, "sample_steps", "null or >= 1", self.sample_steps)
        require(
            self.start_frac is None or (positive(self.start_frac) and self.start_frac <= 1),
            "start_frac",
            "null or in (0, 1]",
            self.start_frac,
        )
        require(at_least(self.few_shot_scale, 0), "few_shot_scale", "a finite number >= 0", self.few_shot_scale)
        require(len(self.gammas) >= 1, "gammas", "at least one guidance scale", self.gammas)
        require(
            all(at_least(g, 0) for g in self.gammas), "gammas", "finite numbers >= 0 (0 is unconditional)", self.gammas
        )
        require(len(set(self.gammas)) == len(self.gammas), "gammas", "distinct", self.gammas)
        require(self.question_heads >= 1, "question_heads", ">= 1", self.question_heads)
        require(self.cond_hidden >= 1, "cond_hidden", ">= 1", self.cond_hidden)
        require(self.ensemble >= 1, "ensemble", ">= 1", self.ensemble)
        require(at_least(self.classifier_scale, 0), "classifier_scale", "a finite number >= 0", self.classifier_scale)


@dataclass(frozen=True)
class RegressorConfig:
    """The ablation row's question -> latent regressor: an MLP trained by mean squared error on the adapted latents
    (normalised per dimension), so that the table separates what the latent space gives from what diffusion adds."""

    hidden_dims: tuple[int, ...] = knob((256, 256), help="hidden widths of the MLP")
    lr: float = knob(1e-3, help="Adam learning rate")
    batch_size: int = knob(32, help="tasks per step")
    epochs: int = knob(100, help="epochs over the meta-train tasks (one augmentation per task and epoch)")
    min_steps: int = knob(2000, help="train at least this many steps, whatever the number of tasks")
    question: QuestionMode = knob("pooled", help="the input: pooled question embedding or attention over tokens")
    question_heads: int = knob(4, help="attention heads of the question encoder (question=attention)")

    def __post_init__(self) -> None:
        require(all(h >= 1 for h in self.hidden_dims), "hidden_dims", "widths >= 1", self.hidden_dims)
        require(positive(self.lr), "lr", "a finite number > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _require_steps(self.epochs, self.min_steps)
        require(self.question_heads >= 1, "question_heads", ">= 1", self.question_heads)


@dataclass(frozen=True)
class ProbeConfig:
    """Fit probes: every training stage measures its own fit on its meta-train tasks `count` times, spread over its
    length (metrics.jsonl's `fit_*` records, results.json's fit curves); with `patience`, a stage stops once its first
    fit measure has not risen more than `min_delta` (points) for that many probes: trained to its plateau."""

    count: int = knob(6, help="fit measurements per training stage, spread over its epochs")
    patience: int | None = knob(None, help="stop a stage after this many probes without progress (null: never)")
    min_delta: float = knob(0.5, help="the least rise of the fit measure (in points) that counts as progress")

    def __post_init__(self) -> None:
        require(self.count >= 0, "count", ">= 0", self.count)
        require(self.patience is None or self.patience >= 1, "patience", "null or >= 1", self.patience)
        require(at_least(self.min_delta, 0), "min_delta", "a finite number >= 0", self.min_delta)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation: k-shot fine-tuning from the zero-shot inner parameters (paper: 10 SGD steps at lr 0.1)."""

    k_shots: tuple[str, ...] = knob(
        ("1", "2", "4", "8", "full"), help="k-shot settings: examples per answer, or 'full' (the whole support set)"
    )
    k_shot_methods: tuple[str, ...] = knob((), help="rows that get the k-shot columns (empty: all)")
    finetune: InnerLoop = knob(help="k-shot fine-tuning", factory=InnerLoop)
    batch_size: int = knob(32, help="tasks evaluated together")

    def __post_init__(self) -> None:
        for k in self.k_shots:
            require(
                k == "full" or (k.isdigit() and int(k) > 0),
                "k_shots",
                "positive integers or 'full', as strings",
                self.k_shots,
            )
        require(len(set(self.k_shots)) == len(self.k_shots), "k_shots", "distinct", self.k_shots)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the universe, the split, the seeds, the methods and every component's settings."""

    universe: str = knob("easyvqa", help="task universe (hyperguide.universes: easyvqa, metavqa, synthetic, ...)")
    split: SplitKind = knob(
        "random",
        help="meta-train / meta-test split: random (paper), compositional, kfold or concepts (a fold per concept)",
    )
    folds: int = knob(5, help="kfold: number of folds")
    held_out: tuple[str, ...] = knob(
        (),
        help="compositional: held-out concepts; concepts: one fold each, several joined by + (red+teal) (empty: the "
        "universe's, one per fold)",
    )
    tune_folds: int | None = knob(
        None,
        help="choose settings without meta-test: set the split's meta-test tasks aside and test on each of this many "
        "folds of its meta-train tasks instead",
    )
    prompts: PromptStyle = knob("answer", help="easyvqa answer prompts: the bare answer or a declarative statement")
    precision: Precision = knob(
        "fp32",
        help="the arithmetic every stage and the evaluation compute in: fp32, tf32 (CUDA) or bf16 (CUDA); a run "
        "folder holds one precision",
    )
    seeds: tuple[int, ...] = knob(
        (0, 1, 2), help="seeds; every stage and row runs once per seed (and fold)", evaluation_only=True
    )  # a checkpoint's own seed is in its name: the list shapes none
    methods: tuple[str, ...] | None = knob(
        None,
        help="methods of the table (hyperguide.rows; null: every default one, the -pointer rows are named; []: none)",
        evaluation_only=True,
    )
    method: MethodConfig = knob(help="the methods' architecture", factory=MethodConfig)
    train: TrainConfig = knob(help="meta-training", factory=TrainConfig)
    eval: EvalConfig = knob(help="evaluation", factory=EvalConfig, evaluation_only=True)
    collect: CollectConfig = knob(help="latent collection", factory=CollectConfig)
    hvae: HVAEConfig = knob(help="the HVAE", factory=HVAEConfig)
    hyperclip: HyperCLIPConfig = knob(help="HyperCLIP", factory=HyperCLIPConfig)
    hyperldm: HyperLDMConfig = knob(help="HyperLDM", factory=HyperLDMConfig)
    regressor: RegressorConfig = knob(help="the question -> latent regressor (ablation)", factory=RegressorConfig)
    probes: ProbeConfig = knob(
        help="fit measurements while each stage trains, and stopping at the plateau", factory=lambda: ProbeConfig()
    )

    def __post_init__(self) -> None:
        require(self.universe.strip() != "", "universe", "a universe's name", self.universe)
        require(self.folds >= 2, "folds", ">= 2 (kfold tests on one fold and trains on the others)", self.folds)
        require(self.tune_folds is None or self.tune_folds >= 2, "tune_folds", "null or >= 2", self.tune_folds)
        require(all(c.strip() for c in self.held_out), "held_out", "non-empty concepts", self.held_out)
        require(len(set(self.held_out)) == len(self.held_out), "held_out", "distinct", self.held_out)
        require(len(self.seeds) >= 1, "seeds", "at least one seed", self.seeds)
        require(all(s >= 0 for s in self.seeds), "seeds", "integers >= 0", self.seeds)
        require(
            len(set(self.seeds)) == len(self.seeds),
            "seeds",
            "distinct (a repeated seed repeats a run and fakes the statistics)",
            self.seeds,
        )
        if self.methods is not None:
            require(len(set(self.methods)) == len(self.methods), "methods", "distinct", self.methods)
