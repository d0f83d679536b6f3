"""Every setting of a run, one frozen dataclass per component, nested in `RunConfig`; each knob has a help line.

The defaults are the paper's (its code's defaults, `docs/design.md` §4.1) unless a field says otherwise; the
presets under `configs/` (`default`: the bench's 30-minute budget, `quick`: smoke runs) change some of them.
`hyperguide config` lists the resolved tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hyperguide.config.typed import knob

QuestionMode = Literal["pooled", "attention"]
Prediction = Literal["eps", "x0", "v"]  # what a diffusion denoiser outputs (diffusion/ddpm.py)
Condition = Literal["concat", "film"]  # how the HyperLDM denoiser reads its condition (models/denoiser.py)
SplitKind = Literal["random", "compositional", "kfold"]
PromptStyle = Literal["declarative", "answer"]  # this order is the order of prepared texts


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
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"inner optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.steps < 0 or self.lr <= 0:
            raise ValueError(f"inner loop needs steps >= 0 and lr > 0, got steps={self.steps}, lr={self.lr}")


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
    adapter_init: Literal["normal", "identity"] = knob(
        "normal", help="init of methods' own adapter weights: N(0, 1) (paper) or the identity adapter"
    )
    inner: InnerLoop = knob(help="MAML's inner loop during meta-training", factory=InnerLoop)
    oracle: InnerLoop = knob(
        help="the oracle bound: fine-tuning on the full support set",
        factory=lambda: InnerLoop(steps=100, lr=1e-2, optimizer="adam"),
    )


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


@dataclass(frozen=True)
class CollectConfig:
    """The adapted-latent dataset: augmented adaptations of every meta-train task from the meta-learned z0."""

    n_aug: int = knob(100, help="augmentations (random subsets, each adapted) per meta-train task")
    inner: InnerLoop = knob(help="the adaptation of z on each subset", factory=InnerLoop)
    batch_size: int = knob(128, help="tasks adapted together (larger batches amortise per-step overhead)")
    max_examples: int | None = knob(None, help="cap on a subset's size (null: the paper's 2/3-to-all subset)")


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
    )
    start: Literal["z0", "centroid", "retrieval"] = knob(
        "z0",
        help="guidance starts from the space's start (z0, paper), the training latents' centroid, or the training "
        "latent HyperCLIP scores highest for the question (retrieval)",
    )
    guidance_step: float | None = knob(
        None, help="guidance lr as this fraction of the training latents' per-dimension spread (null: guidance.lr)"
    )
    span: int | None = knob(None, help="confine guidance to the centroid + this many principal axes of the latents")
    normalize: bool = knob(True, help="standardise the weight tower's input by the training codes (paper: off)")
    init_l2: float = knob(0.0, help="weight of 1/2 ||x - x_start||^2 in the guidance loss")
    question: QuestionMode = knob("pooled", help="the text side: pooled question embedding or attention over tokens")
    question_heads: int = knob(4, help="attention heads of the question encoder (question=attention)")
    candidates: int = knob(10, help="the task-identification diagnostic picks the right question among this many")


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
    sample_steps: int | None = knob(None, help="respaced sampling with this many steps (null: all num_steps)")
    start_frac: float | None = knob(
        None, help="start the reverse chain from the noised starting latent at this fraction of T (null: noise)"
    )
    few_shot_scale: float = knob(0.0, help="few-shot guidance by the support-loss gradient (> 0 uses labels)")
    gammas: tuple[float, ...] = knob(
        (0.0, 1.0, 1.5, 2.0, 4.0), help="guidance scales of the table's rows (0 unconditional, 1 conditional)"
    )
    question: QuestionMode = knob("pooled", help="the condition: pooled question embedding or attention over tokens")
    question_heads: int = knob(4, help="attention heads of the question encoder (question=attention)")
    clip_x0: bool = knob(True, help="bound each sampling step's predicted x0 to the training latents' range")

    def __post_init__(self) -> None:
        if any(g < 0 for g in self.gammas):
            raise ValueError(f"gammas must be >= 0 (0 is unconditional), got {list(self.gammas)}")


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
            if k != "full" and not (k.isdigit() and int(k) > 0):
                raise ValueError(f"k-shot value {k!r} must be a positive integer or 'full'")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the universe, the split, the seeds, the methods and every component's settings."""

    universe: str = knob("easyvqa", help="task universe (hyperguide.universes: easyvqa, metavqa, synthetic, ...)")
    split: SplitKind = knob("random", help="meta-train / meta-test split: random (paper), compositional or kfold")
    folds: int = knob(5, help="kfold: number of folds")
    held_out: tuple[str, ...] = knob((), help="compositional: held-out concepts (empty: the universe's)")
    prompts: PromptStyle = knob("answer", help="easyvqa answer prompts: the bare answer or a declarative statement")
    seeds: tuple[int, ...] = knob((0, 1, 2), help="seeds; every stage and row runs once per seed (and fold)")
    probes: int = knob(6, help="fit measurements per training stage, spread over its epochs (metrics.jsonl's fit_*)")
    methods: tuple[str, ...] | None = knob(
        None, help="methods of the table (hyperguide.rows; null: every registered one; []: none)"
    )
    method: MethodConfig = knob(help="the methods' architecture", factory=MethodConfig)
    train: TrainConfig = knob(help="meta-training", factory=TrainConfig)
    eval: EvalConfig = knob(help="evaluation", factory=EvalConfig)
    collect: CollectConfig = knob(help="latent collection", factory=CollectConfig)
    hvae: HVAEConfig = knob(help="the HVAE", factory=HVAEConfig)
    hyperclip: HyperCLIPConfig = knob(help="HyperCLIP", factory=HyperCLIPConfig)
    hyperldm: HyperLDMConfig = knob(help="HyperLDM", factory=HyperLDMConfig)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        if self.methods is not None and len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct, got {list(self.methods)}")
