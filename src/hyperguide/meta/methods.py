"""The methods that produce adapter weights for a task: the paper's baselines (docs/design.md §5) and the bounds.
Which table row each one is, and how it is trained, is declared in `hyperguide.rows`.

Every method is a pair (inner parameters, generator): `init_phi(batch)` gives each task's inner parameters phi
(B, M) before adaptation, and `generate(phi)` maps them to flat adapter weights (B, P). Zero-shot weights are
`decoder(batch)(zero_shot_phi(batch))` (`generate`, unless the weights also read the questions); few-shot
fine-tuning adapts phi from there. Training is either multitask
(one loss on all of each meta-train task's data) or MAML (adapt phi on the support set, loss on the query set).

| class | phi | generate | trained by |
|---|---|---|---|
| ClipZeroShot | zero adapter weights | identity | nothing (the frozen encoders alone) |
| UncondMultitask | shared adapter weights | identity | multitask |
| UncondMNetMAML | shared adapter weights | identity | MAML on the weights |
| UncondHNetMAML | a learned latent z0 | HyperNet(z) (+ the pointer, `-pointer`) | MAML on z |
| CondMultitask | HyperNet(question) | identity | multitask |
| CondMultitaskFiLM | shared adapter with FiLM(question) on its hidden layer | identity | multitask |
| CondHNetMAML | the question embedding | HyperNet(q) | MAML on q |
| Oracle | adapter weights fine-tuned on the full support set | identity | nothing (uses labels) |

`decoder(batch)` is `generate` for the batch's tasks: the weights of a row with the pointer (`models/pointer.py`) in
a generator that decodes phi (the `-pointer` HNet) also depend on each task's question, so every call site that has
a batch decodes through it.

Conditional methods see the question through `MethodConfig.question`: the pooled embedding (the paper), or learned
attention pooling over the question's token states (`models/question.py`), trained with the rest of the method.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from hyperguide.config import MethodConfig
from hyperguide.data.batch import TaskBatch
from hyperguide.errors import HyperguideError
from hyperguide.meta.inner_loop import WeightDecoder, adapt, support_loss_fn
from hyperguide.meta.losses import task_cross_entropy
from hyperguide.models.adapter import AdapterShape, adapter_logits
from hyperguide.models.hypernet import FiLM, HyperNet
from hyperguide.models.pointer import PointerRows
from hyperguide.models.question import QuestionEncoder

Training = Literal["none", "multitask", "maml", "guidance"]


class Method(nn.Module):
    """Base class: subclasses set `trained_by` and implement `init_phi` (and `generate` if not identity).
    `uses_support_for_zero_shot` marks a method whose zero-shot value reads the support set's labels (the oracle);
    `members` > 1 an ensemble, whose phi holds that many members' inner parameters per task."""

    trained_by: ClassVar[Training] = "none"
    uses_support_for_zero_shot: bool = False
    members: int = 1  # adapters per task: generate(phi) gives (B * members, P), scored by their mean logits

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__()
        self.shape = shape
        self.question_dim = question_dim
        self.config = config

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        raise NotImplementedError

    def _pointer(self, cond_dim: int) -> PointerRows | None:
        """The pointer rows of a `-pointer` row (`config.pointer_rows` > 0), reading the generator's hidden
        activations (`cond_dim` wide) for their gains; None without them."""
        if self.config.pointer_rows == 0:
            return None
        if self.question_dim != self.shape.feature_dim:
            raise HyperguideError(
                f"method.pointer_rows: the pointer adds the question's embedding to the adapter's weights, so it "
                f"needs questions in the image features' space; here questions are {self.question_dim}-d and image "
                f"features {self.shape.feature_dim}-d (a text encoder of another width?): use a row without -pointer"
            )
        return PointerRows(self.shape, cond_dim, self.config.pointer_rows)

    def _question_encoder(self) -> QuestionEncoder:
        """The question as this method conditions on it (`MethodConfig.question`); no parameters when pooled."""
        return QuestionEncoder(self.question_dim, self.config.question, self.config.question_heads)

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        return phi

    def decoder(self, batch: TaskBatch) -> WeightDecoder:
        """phi (B, M) -> the weights (B * members, P) of the batch's tasks: `generate`, unless the weights also read
        the tasks' questions."""
        return self.generate

    def trained_parts(self) -> list[nn.Module]:
        """The modules the row's training stages produce, in the order of its stages: the method itself for a
        method that is meta-trained as a whole; a guidance method lists its latent space's parts and its guide."""
        return [self]

    def zero_shot_phi(self, batch: TaskBatch) -> torch.Tensor:
        """The inner parameters the method answers with before seeing any label of the task."""
        return self.init_phi(batch)

    def _own_weights(self) -> nn.Parameter:
        if self.config.adapter_init == "normal":
            return nn.Parameter(self.shape.init_normal(1)[0])
        return nn.Parameter(self.shape.identity_random(1)[0])

    def query_loss(self, batch: TaskBatch, weights: torch.Tensor) -> torch.Tensor:
        lengths = batch.lengths("query")
        logits = adapter_logits(self.shape, weights, batch.query_x, batch.answer_emb, batch.answer_mask, lengths)
        return task_cross_entropy(logits, batch.query_y, batch.query_mask).mean()

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """The training objective on a batch of meta-train tasks (scalar)."""
        if self.trained_by == "multitask":
            merged = batch.merged()
            return support_loss_fn(self.shape, self.decoder(merged), merged)(self.init_phi(batch)).mean()
        if self.trained_by == "maml":
            decoder = self.decoder(batch)
            phi = adapt(
                support_loss_fn(self.shape, decoder, batch),
                self.init_phi(batch),
                self.config.inner,
                track_meta_grad=True,
            )
            return self.query_loss(batch, decoder(phi))
        raise RuntimeError(f"{type(self).__name__} is not trained")


class ClipZeroShot(Method):
    """The identity adapter. Its weights are W1 ~ N(0, 1) (drawn once, from the run's seed) and zeros elsewhere: the
    same function as all-zero weights, but fine-tuning from it moves every weight (zeros are a saddle point)."""

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.identity_weights: torch.Tensor
        self.register_buffer("identity_weights", shape.identity_random(1)[0])

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        return self.identity_weights.expand(len(batch), -1)


class Oracle(ClipZeroShot):
    """Not zero-shot: an adapter fine-tuned on the task's full support set, from the identity. The upper bound."""

    uses_support_for_zero_shot = True

    def zero_shot_phi(self, batch: TaskBatch) -> torch.Tensor:
        return adapt(support_loss_fn(self.shape, self.decoder(batch), batch), self.init_phi(batch), self.config.oracle)


class UncondMultitask(Method):
    """One adapter shared by every task, trained on all of each meta-train task's data."""

    trained_by: ClassVar[Training] = "multitask"

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.weights = self._own_weights()

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        return self.weights.expand(len(batch), -1)


class UncondMNetMAML(UncondMultitask):
    """The shared adapter's weights as MAML's initialisation."""

    trained_by = "maml"


class UncondHNetMAML(Method):
    """An HNet (latent z -> weights), MAML on z: the latent space of the guidance rows.

    With the pointer (`uncond-hnet-maml-pointer`) the HNet stays unconditional in its latent and its last hidden
    layer (the *code*) also gives the pointer's gains: weights = readout(code) + P(code, q). The latent then spans
    programs ("detect the concept, with this polarity and threshold") and the question supplies the direction
    ("which concept"): so the weights depend on the task's question, and `generate` alone cannot decode them."""

    trained_by = "maml"

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.z0 = nn.Parameter(torch.randn(config.latent_dim))
        self.hypernet = HyperNet(config.latent_dim, config.hnet_hidden, shape.n_params)
        self.pointer = self._pointer(config.hnet_hidden[-1] if config.hnet_hidden else config.latent_dim)

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        return self.z0.expand(len(batch), -1)

    def weights(self, code: torch.Tensor, question: torch.Tensor | None) -> torch.Tensor:
        """Codes (B, H) (the HNet's last hidden activations) and the tasks' pooled question embeddings (B, D) ->
        adapter weights (B, P). `question` may be None only without the pointer."""
        out = self.hypernet.output_layer(code)
        if self.pointer is None:
            return out
        if question is None:
            raise HyperguideError(
                "this HNet has the pointer (method.pointer_rows > 0): its weights depend on the task's question, "
                "decode it through decoder(batch)"
            )
        return out + self.pointer(code, question)

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        return self.weights(self.hypernet.hidden(phi), None)

    def decoder(self, batch: TaskBatch) -> WeightDecoder:
        if self.pointer is None:
            return self.generate
        question = batch.questions.emb
        return lambda phi: self.weights(self.hypernet.hidden(phi), question)


class CondMultitask(Method):
    trained_by = "multitask"

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.question = self._question_encoder()
        self.hypernet = HyperNet(question_dim, config.hnet_hidden, shape.n_params)
        self.pointer = self._pointer(config.hnet_hidden[-1] if config.hnet_hidden else question_dim)

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        encoded = self.question.encode_batch(batch)
        if self.pointer is None:
            return self.hypernet(encoded)
        hidden = self.hypernet.hidden(encoded)
        return self.hypernet.output_layer(hidden) + self.pointer(hidden, batch.questions.emb)


class CondMultitaskFiLM(Method):
    """A shared adapter whose hidden units are scaled and shifted by FiLM parameters predicted from the question.

    relu(s * (W1' x + b1) + t) = relu((diag(s) W1)' x + (s * b1 + t)), so the modulated adapter is itself an adapter:
    its weights are W1 scaled row-wise by s, b1 -> s * b1 + t, and the shared W2, b2. Few-shot fine-tuning then works on
    those weights like for every other method.
    """

    trained_by = "multitask"

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.weights = self._own_weights()
        self.question = self._question_encoder()
        self.film = FiLM(question_dim, config.film_hidden, shape.hidden_dim)
        self.pointer = self._pointer(config.film_hidden)

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        hidden = self.film.hidden(self.question.encode_batch(batch))
        scale, shift = self.film.modulation(hidden)  # (B, H) each
        shared = self.shape.unflatten(self.weights.expand(len(batch), -1))
        modulated = {
            "w1": shared["w1"] * scale.unsqueeze(-1),
            "b1": shared["b1"] * scale + shift,
            "w2": shared["w2"],
            "b2": shared["b2"],
        }
        weights = self.shape.flatten(modulated)
        return weights if self.pointer is None else weights + self.pointer(hidden, batch.questions.emb)


class CondHNetMAML(Method):
    """A hypernetwork from the question embedding, meta-trained with MAML on its input: phi0 = the question."""

    trained_by = "maml"

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.question = self._question_encoder()
        self.hypernet = HyperNet(question_dim, config.hnet_hidden, shape.n_params)

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        return self.question.encode_batch(batch)

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        return self.hypernet(phi)
