"""Decoding an image file safely: its header is checked (size, pixel count) before any pixel is decoded, so that a
decompression bomb (a small file that declares a huge image) is refused at once, and every failure names the file."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from hyperguide.errors import HyperguideError

# Far above any image a run reads (easy-VQA: 64x64; COCO: about 640x480): a header that declares more is refused
# before decoding (Pillow only warns up to twice its own limit of 89 megapixels, and decodes).
MAX_PIXELS = 40_000_000


def decode_image(
    path: str | Path, *, what: str = "image", size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """The decoded image at `path` (its own mode). A missing file, one that does not decode, one whose header
    declares more than `max_pixels` pixels, or (with `size`) another (width, height) raises `HyperguideError`."""
    try:
        with warnings.catch_warnings():  # Pillow warns of a large image at open; it is checked below, before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if size is not None and (width, height) != size:
                raise HyperguideError(f"{what} {path} is {width}x{height} pixels, expected {size[0]}x{size[1]}")
            if width * height > max_pixels:
                raise HyperguideError(
                    f"{what} {path} declares {width}x{height} pixels, more than the {max_pixels:,} an image may have "
                    "here (a decompression bomb?); it was not decoded"
                )
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise HyperguideError(f"{what} not found: {path}") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise HyperguideError(f"{what} {path} does not decode as an image: {e}") from None
