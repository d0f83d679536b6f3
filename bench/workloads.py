"""The paper-scale workloads of `paper_scale.py`: for each stage, the library's batched path, the per-task reference
loop on a subset, and the batched path's matrix-multiply FLOPs counted analytically.

The batched path is the library as executed. Its HVAE and HyperCLIP read the HNet's *codes* (its last hidden layer h,
128-d; the weights are the readout W = A h + b, A of shape (P, 128)): their P-wide layers are folded into the readout
(`models/vae.py`, `models/hyperclip.py`). The reference loops of hvae_epoch, hyperclip_epoch and hyperclip_guidance
run the paper's own computation instead, P-wide layers on W = HNet(z) (`reference_loops.PaperHVAE`,
`PaperHyperCLIP`): the same functions of the HNet's weights, so their ratio holds that algebraic saving as well as
batching. For hyperclip_guidance both paths use the same tower (the library's is the paper's folded into the readout).

FLOP conventions (matmul FLOPs only; elementwise work, optimiser updates and padding are not counted):
* a product (m, k) @ (k, n) is 2 m k n FLOPs; a backward pass costs 2 m k n for the input gradient and 2 m k n for the
  weight gradient, each only where it is needed.
* `mlp(rows, dims)` = 2 rows sum_i d_i d_{i+1}: one forward pass of an MLP with layer widths `dims` on `rows` inputs.
  `trained(rows, dims)` = forward + every weight gradient + the input gradients of every layer but the first
  (3 mlp - 2 rows d_0 d_1); with `input_grad=True` the first layer's too (3 mlp).
* HNet = mlp over (128, 128, 128, 128, P), P = 394,240: its hidden layers (128 -> 3 x 128, ending in the code) and its
  readout (128 -> P). The adapter on n examples with K answers: forward 4 n D H + 2 n K D, backward to its weights (and
  hidden units) 6 n D H + 2 n K D.
* The denoiser (`HyperLDMConfig` defaults, condition="film"): blocks over concat[x_t, emb(t)] (128 + 100) -> 128 ->
  128, out 128 -> 128; per forward, the condition's projection 768 -> 128 once and a 128 -> 2 x 128 modulation per
  block. Trained: the blocks (first without input gradient), the modulations with input gradients (to the
  projection), the projection's weight gradient.
Per stage (B tasks or a batch of b; n tasks in an epoch):
* hnet_maml_epoch: per task, 10 x [HNet fwd + HNet input grad + adapter fwd/bwd on the support set] + HNet fwd at z'
  + HNet weight and input grads + adapter fwd/bwd on the query set.
* collect_epoch: per task, 10 x [HNet fwd + input grad + adapter fwd/bwd on ceil(f n) examples], E[f] = 5/6.
* hvae_epoch: once, the codes of the n latents (HNet hidden layers) and the readout's Gram matrix A^T A
  (2 x 128 x P x 128); per task, the encoder (128 -> 128 -> 128 -> 256) trained, the decoder (128 -> 128 -> 128 ->
  128) trained with its input gradient (through the reparameterisation), and the metric product (h' - h) A^T A forward
  and input grad. The readout is never applied.
* hyperclip_epoch: the codes of the n latents twice without gradients (the input standardisation, then each step's
  batch), the tower (128 -> 128 -> 128 -> 768) trained, and per step the logits (b, 768) @ (768, b) forward and their
  gradient to the weight side.
* hyperldm_epoch: per task, the denoiser trained.
* sample_*: steps x passes x denoiser fwd on all tasks (2 passes when gamma is not 0 or 1).
* hyperclip_guidance: per step, the HNet's hidden layers and the tower, forward and input grads (2 mlp each), on all
  tasks.
`direct_gflop` (hvae_epoch, hyperclip_epoch, hyperclip_guidance): the same procedure on the weights with the paper's
P-wide layers, what the reference loop runs: the full HNet forward (readout included), the HVAE's encoder P -> 128 ->
128 -> 256 and decoder 128 -> 128 -> 128 -> P, the tower's P -> 128 first layer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import reference_loops as ref
import torch

from hyperguide.config import HVAEConfig, HyperCLIPConfig, HyperLDMConfig, InnerLoop, MethodConfig, TrainConfig
from hyperguide.data.batch import Questions
from hyperguide.data.tasks import Task
from hyperguide.diffusion.noise import Noise
from hyperguide.meta.collect import collect_latents
from hyperguide.meta.hvae import train_hvae
from hyperguide.meta.hyperclip import guidance_loss_fn, train_hyperclip
from hyperguide.meta.hyperldm import build_hyperldm, sample_latents, train_hyperldm
from hyperguide.meta.inner_loop import adapt
from hyperguide.meta.meta_training import train_method
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.meta.spaces import HNetSpace
from hyperguide.models.adapter import AdapterShape

D, H, LATENT = 768, 256, 128
SHAPE = AdapterShape(D, H)
P = SHAPE.n_params
HNET_DIMS = (LATENT, 128, 128, 128, P)
HIDDEN_DIMS, CODE = HNET_DIMS[:-1], HNET_DIMS[-2]  # the HNet up to its code h; the readout is (CODE -> P)
ENCODER_DIMS, PAPER_ENCODER_DIMS = (CODE, 128, 128, D), (P, 128, 128, D)  # HyperCLIP's weight tower
VAE_ENC_DIMS, VAE_DEC_DIMS = (CODE, 128, 128, 2 * LATENT), (LATENT, 128, 128, CODE)
PAPER_VAE_ENC_DIMS, PAPER_VAE_DEC_DIMS = (P, *VAE_ENC_DIMS[1:]), (*VAE_DEC_DIMS[:-1], P)
BATCH = 32


@dataclass
class Workload:
    """One stage: `batched()` runs the library's path on all `units`; `loop()` the reference on `loop_units`."""

    name: str
    units: int
    loop_units: int
    unit: str
    batched: Callable[[], object]
    loop: Callable[[], object]
    gflop: float
    direct_gflop: float | None = None


@dataclass
class Context:
    device: str
    train: list[Task]  # meta-train tasks
    test: list[Task]  # meta-test tasks
    loop_tasks: int
    gamma: float
    respaced_steps: int
    seed: int = 0


def mlp(rows: float, dims: Sequence[int]) -> float:
    return 2.0 * rows * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=False))


def trained(rows: float, dims: Sequence[int], *, input_grad: bool = False) -> float:
    """Forward, every weight gradient and the input gradients of every layer but the first (its too with
    `input_grad`)."""
    return 3.0 * mlp(rows, dims) - (0.0 if input_grad else 2.0 * rows * dims[0] * dims[1])


def denoiser(rows: float, config: HyperLDMConfig, *, train: bool = False) -> float:
    """One forward pass of `config`'s denoiser on `rows` inputs (with `train`, forward and backward); with FiLM, the
    condition's projection once and one modulation per block."""
    film = config.condition == "film"
    blocks = (LATENT + config.time_dim + (0 if film else D), *config.hidden_dims, LATENT)
    proj = [(D, config.cond_hidden)] if film else []
    mods = [(config.cond_hidden, 2 * h) for h in config.hidden_dims] if film else []
    if not train:
        return sum(mlp(rows, dims) for dims in [blocks, *proj, *mods])
    return trained(rows, blocks) + sum(2 * mlp(rows, d) for d in proj) + sum(3 * mlp(rows, d) for d in mods)


def adapter_fwd_bwd(n: float, k: float) -> float:
    return 10.0 * n * D * H + 4.0 * n * k * D


def _method(seed: int) -> UncondHNetMAML:
    torch.manual_seed(seed)
    config = MethodConfig(adapter_hidden=H, latent_dim=LATENT, hnet_hidden=(128, 128, 128), inner=InnerLoop(10, 0.1))
    return UncondHNetMAML(SHAPE, D, config)


def _gen(ctx: Context) -> torch.Generator:
    return torch.Generator().manual_seed(ctx.seed)


def _latents(ctx: Context, n: int) -> torch.Tensor:
    """(1, n, 128) adapted-latent stand-ins: z0 plus small noise (one augmentation)."""
    return torch.randn(1, n, LATENT, generator=_gen(ctx)) * 0.1


def hnet_maml_epoch(ctx: Context) -> Workload:
    method = _method(ctx.seed).to(ctx.device)
    reference = copy.deepcopy(method)
    config = TrainConfig(epochs=1, meta_batch_size=BATCH, max_examples=None)
    flop = sum(
        10 * (2 * mlp(1, HNET_DIMS) + adapter_fwd_bwd(len(t.support_y), t.n_answers))
        + 3 * mlp(1, HNET_DIMS)
        + adapter_fwd_bwd(len(t.query_y), t.n_answers)
        for t in ctx.train
    )
    subset = ctx.train[: ctx.loop_tasks]
    return Workload(
        "hnet_maml_epoch",
        len(ctx.train),
        len(subset),
        "task",
        lambda: train_method(method, ctx.train, config, generator=_gen(ctx), device=ctx.device),
        lambda: ref.maml_epoch(reference, subset, ctx.device),
        flop / 1e9,
    )


def collect_epoch(ctx: Context) -> Workload:
    method = _method(ctx.seed).to(ctx.device)
    flop = sum(
        10 * (2 * mlp(1, HNET_DIMS) + adapter_fwd_bwd(5 / 6 * (len(t.support_y) + len(t.query_y)), t.n_answers))
        for t in ctx.train
    )
    subset = ctx.train[: ctx.loop_tasks]
    return Workload(
        "collect_epoch",
        len(ctx.train),
        len(subset),
        "task",
        lambda: collect_latents(
            method, ctx.train, n_aug=1, inner=InnerLoop(10, 0.1), generator=_gen(ctx), device=ctx.device
        ),
        lambda: ref.collect_epoch(copy.deepcopy(method), subset, ctx.device, _gen(ctx)),
        flop / 1e9,
    )


def _steps(n: int) -> int:
    return math.ceil(n / BATCH)


def _batch_sizes(n: int) -> list[int]:
    return [min(BATCH, n - start) for start in range(0, n, BATCH)]


def _loop_steps(ctx: Context, n: int) -> int:
    """Whole 32-task steps of the reference loop: at least 2, so that the first step's one-time costs (optimiser
    state) are spread as in an epoch rather than multiplied by the extrapolation."""
    return min(_steps(n), max(2, ctx.loop_tasks // BATCH))


def _latent_setup(ctx: Context) -> tuple[UncondHNetMAML, int, torch.Tensor, torch.Tensor, Questions]:
    """What the guidance-training workloads share: the frozen HNet, the meta-train task count, the (1, n, 128) latents
    and their first augmentation on the device, and the meta-train questions on the device."""
    base = _method(ctx.seed).to(ctx.device).requires_grad_(False)
    n = len(ctx.train)
    latents = _latents(ctx, n)
    return base, n, latents, latents[0].to(ctx.device), Questions.of(ctx.train).to(ctx.device)


def hvae_epoch(ctx: Context) -> Workload:
    base, n, latents, z, _ = _latent_setup(ctx)
    once = mlp(n, HIDDEN_DIMS) + 2.0 * CODE * P * CODE
    per_task = trained(1, VAE_ENC_DIMS) + trained(1, VAE_DEC_DIMS, input_grad=True) + 2 * mlp(1, (CODE, CODE))
    paper = mlp(1, HNET_DIMS) + trained(1, PAPER_VAE_ENC_DIMS) + trained(1, PAPER_VAE_DEC_DIMS, input_grad=True)
    config = HVAEConfig(epochs=1)
    loop_steps = _loop_steps(ctx, n)
    vae = ref.PaperHVAE(P, config.hidden_dims, config.latent_dim).to(ctx.device)  # built outside the timed loop
    return Workload(
        "hvae_epoch",
        _steps(n),
        loop_steps,
        "step",
        lambda: train_hvae(base, latents, config, generator=_gen(ctx), device=ctx.device),
        lambda: ref.hvae_steps(base, vae, z, loop_steps, _gen(ctx)),
        (once + n * per_task) / 1e9,
        n * paper / 1e9,
    )


def hyperclip_epoch(ctx: Context) -> Workload:
    base, n, latents, z, questions = _latent_setup(ctx)
    logits = sum(4.0 * b * b * D for b in _batch_sizes(n) if b >= 2)
    config = HyperCLIPConfig(epochs=1)
    loop_steps = _loop_steps(ctx, n)
    tower = ref.PaperHyperCLIP(P, config.hidden_dims, D).to(ctx.device)  # built outside the timed loop
    return Workload(
        "hyperclip_epoch",
        _steps(n),
        loop_steps,
        "step",
        lambda: train_hyperclip(HNetSpace(base), latents, questions, config, generator=_gen(ctx), device=ctx.device),
        lambda: ref.hyperclip_steps(base, tower, z, questions, loop_steps),
        (2 * mlp(n, HIDDEN_DIMS) + n * trained(1, ENCODER_DIMS) + logits) / 1e9,
        (n * (mlp(1, HNET_DIMS) + trained(1, PAPER_ENCODER_DIMS)) + logits) / 1e9,
    )


def hyperldm_epoch(ctx: Context) -> Workload:
    base, n, latents, z, questions = _latent_setup(ctx)
    config = HyperLDMConfig(epochs=1, min_steps=0)
    model = build_hyperldm(LATENT, D, config).to(ctx.device)
    loop_steps = _loop_steps(ctx, n)
    return Workload(
        "hyperldm_epoch",
        _steps(n),
        loop_steps,
        "step",
        lambda: train_hyperldm(HNetSpace(base), latents, questions, config, generator=_gen(ctx), device=ctx.device),
        lambda: ref.hyperldm_steps(model, config, z, questions, loop_steps, _gen(ctx)),
        denoiser(n, config, train=True) / 1e9,
    )


def _sample(ctx: Context, name: str, sample_steps: int | None) -> Workload:
    config = HyperLDMConfig(sample_steps=sample_steps)
    torch.manual_seed(ctx.seed)
    model = build_hyperldm(LATENT, D, config).to(ctx.device).eval()
    questions = Questions.of(ctx.test).to(ctx.device)
    subset = questions[: ctx.loop_tasks]
    steps = sample_steps or config.num_steps
    passes = 1 if ctx.gamma in (0.0, 1.0) else 2
    return Workload(
        name,
        len(ctx.test),
        len(subset),
        "task",
        # one noise stream per task, seeded by its question, as the library's rows sample (meta/guided.py)
        lambda: sample_latents(
            model, questions, config, gamma=ctx.gamma, generator=Noise.for_rows(ctx.seed, questions.emb)
        ),
        lambda: ref.sample_one_by_one(model, config, subset, ctx.gamma, _gen(ctx)),
        steps * passes * denoiser(len(ctx.test), config) / 1e9,
    )


def sample_ddpm(ctx: Context) -> Workload:
    return _sample(ctx, "sample_ddpm", None)


def sample_respaced(ctx: Context) -> Workload:
    return _sample(ctx, "sample_respaced", ctx.respaced_steps)


def hyperclip_guidance(ctx: Context) -> Workload:
    base = _method(ctx.seed).to(ctx.device).requires_grad_(False)
    space = HNetSpace(base)
    torch.manual_seed(ctx.seed + 1)
    tower = ref.PaperHyperCLIP(P, (128, 128), D).to(ctx.device).requires_grad_(False)
    encoder = tower.folded(space.readout).eval().requires_grad_(False)  # the same function of the weights, on codes
    questions = Questions.of(ctx.test).to(ctx.device)
    n, steps = len(ctx.test), 50
    loop = InnerLoop(steps, 1e-3, "adam")
    x0 = space.start(n, None)
    return Workload(
        "hyperclip_guidance",
        n,
        min(n, ctx.loop_tasks),
        "task",
        lambda: adapt(guidance_loss_fn(space, encoder, questions, x0, 0.0), x0, loop),
        lambda: ref.guidance_one_by_one(base, tower, questions[: ctx.loop_tasks], steps),
        steps * 2 * (mlp(n, HIDDEN_DIMS) + mlp(n, ENCODER_DIMS)) / 1e9,
        steps * 2 * (mlp(n, HNET_DIMS) + mlp(n, PAPER_ENCODER_DIMS)) / 1e9,
    )


WORKLOADS: dict[str, Callable[[Context], Workload]] = {
    f.__name__: f
    for f in (
        hnet_maml_epoch,
        collect_epoch,
        hvae_epoch,
        hyperclip_epoch,
        hyperldm_epoch,
        sample_ddpm,
        sample_respaced,
        hyperclip_guidance,
    )
}
