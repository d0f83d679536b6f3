"""Features you computed yourself, with any encoder: one safetensors file read into the feature tables of a
`taskfile` universe (`hyperguide prepare taskfile --tasks FILE --features-file FEATURES.safetensors`).

The file holds one tensor per key, named by a prefix and the text or image it embeds:

    image/<image>      (D,)     an image, named exactly as the task file writes it ("0.png", "easy-vqa:train/3")
    text/<text>        (D,)     every question and every answer prompt (the task's `prompts`, else its answers)
    tokens/<question>  (L, D)   optional: a question's token states, for the -attention rows (else the pooled
                                question stands in as its one token)

Every image, question and prompt the tasks use must have its key; other keys are ignored. Every tensor must be
floating point, of its shape, with one D for all, and finite. The file's metadata may say `"shared_space": "true"`:
its images and texts live in one space (a CLIP-like encoder), which the -pointer rows need. Everything is checked
before anything is returned, and every refusal names the file, the key and the first task that needs it. Tensors are
read one key at a time into preallocated tables, so memory stays at the size of the tables themselves.

    from safetensors.torch import save_file
    save_file({"image/0.png": img_emb, "text/Is it round?": q_emb, "text/yes": yes_emb, "text/no": no_emb},
              "features.safetensors", metadata={"shared_space": "true"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hyperguide.data.features import FeatureTable
from hyperguide.data.tokens import TokenTable
from hyperguide.errors import HyperguideError

IMAGE, TEXT, TOKENS = "image/", "text/", "tokens/"
FLOATS = ("F16", "BF16", "F32", "F64")


@dataclass
class Precomputed:
    images: FeatureTable
    texts: FeatureTable
    tokens: TokenTable | None
    shared_space: bool


def _shared_space(path: Path, metadata: Mapping[str, str]) -> bool:
    value = metadata.get("shared_space", "false").strip().lower()
    if value not in ("true", "false"):
        raise HyperguideError(f"features file {path}: metadata 'shared_space' must be 'true' or 'false', got {value!r}")
    return value == "true"


def read_precomputed(
    path: str | Path,
    images: Sequence[str],
    texts: Sequence[str],
    questions: Sequence[str],
    text_blame: Mapping[str, str],
    image_blame: Mapping[str, str],
) -> Precomputed:
    """The features of `images`, `texts` (questions and prompts) and, if the file has any `tokens/` key, of
    `questions`, from the file at `path`. `text_blame[text]` and `image_blame[image]` say where each is first needed
    (file, task, field)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise HyperguideError(f"features file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            specs = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 (a safe_open has no iter)
            shapes = {k: (tuple(s.get_shape()), str(s.get_dtype())) for k, s in specs.items()}
            metadata = dict(f.metadata() or {})
            has_tokens = any(k.startswith(TOKENS) for k in shapes)
            needed = [*(IMAGE + k for k in images), *(TEXT + k for k in texts)]
            needed += [TOKENS + q for q in questions] if has_tokens else []
            blame = {IMAGE: image_blame, TEXT: text_blame, TOKENS: text_blame}
            dim = _check_specs(path, shapes, needed, blame)
            image_table = _table(f, path, IMAGE, images, dim, image_blame)
            text_table = _table(f, path, TEXT, texts, dim, text_blame)
            tokens = _tokens(f, path, questions, dim, text_blame) if has_tokens else None
    except (SafetensorError, OSError) as e:
        raise HyperguideError(f"features file {path} is not a readable safetensors file: {e}") from None
    return Precomputed(image_table, text_table, tokens, _shared_space(path, metadata))


def _check_specs(
    path: Path,
    shapes: Mapping[str, tuple[tuple[int, ...], str]],
    needed: Sequence[str],
    blame: Mapping[str, Mapping[str, str]],
) -> int:
    """The one feature dimension D of the needed keys, each present, floating point, of its shape."""
    missing = [k for k in needed if k not in shapes]
    if missing:
        key = missing[0]
        prefix, _, rest = key.partition("/")
        raise HyperguideError(
            f"features file {path} has no tensor {key!r} ({len(missing)} needed keys are missing), which "
            f"{blame[prefix + '/'].get(rest, 'the tasks')} needs (keys: image/<image as the task file writes "
            "it>, text/<question or prompt>, tokens/<question>)"
        )
    dim = None
    for key in needed:
        shape, dtype = shapes[key]
        prefix, _, rest = key.partition("/")
        where = f"features file {path}: tensor {key!r} (for {blame[prefix + '/'].get(rest, 'the tasks')})"
        if dtype not in FLOATS:
            raise HyperguideError(f"{where} is {dtype}, not floating point")
        want = 2 if key.startswith(TOKENS) else 1
        if len(shape) != want or 0 in shape:
            form = "(L >= 1, D)" if want == 2 else "(D,)"
            raise HyperguideError(f"{where} has shape {list(shape)}, expected {form}")
        if dim is None:
            dim = shape[-1]
        if shape[-1] != dim:
            raise HyperguideError(
                f"{where} has dimension {shape[-1]}, but {needed[0]!r} has {dim}: images, texts and tokens must share "
                "one dimension (the adapter scores images against answer texts)"
            )
    if dim is None:
        raise HyperguideError(f"features file {path}: the tasks need no feature")
    return dim


def _finite(path: Path, key: str, value: torch.Tensor, blame: Mapping[str, str]) -> torch.Tensor:
    """`value` as float32, refused if anything in it is NaN or infinite there (a float64 beyond float32's range
    included)."""
    value = value.float()
    if not bool(torch.isfinite(value).all()):
        needed = blame.get(key.partition("/")[2], "the tasks")
        raise HyperguideError(f"features file {path}: tensor {key!r} (for {needed}) holds NaN or infinity in float32")
    return value


def _table(f: object, path: Path, prefix: str, keys: Sequence[str], dim: int, blame: Mapping[str, str]) -> FeatureTable:
    values = torch.empty(len(keys), dim)
    for row, key in enumerate(keys):
        values[row] = _finite(path, prefix + key, f.get_tensor(prefix + key), blame)  # type: ignore[attr-defined]
    return FeatureTable(keys, values, source=f"{path} ({prefix}...)")


def _tokens(f: object, path: Path, questions: Sequence[str], dim: int, blame: Mapping[str, str]) -> TokenTable:
    rows = [_finite(path, TOKENS + q, f.get_tensor(TOKENS + q), blame) for q in questions]  # type: ignore[attr-defined]
    return TokenTable.from_rows(questions, rows, source=f"{path} ({TOKENS}...)")
