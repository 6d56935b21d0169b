"""Image intake for attribution: PNG/JPEG/WebP bytes -> float RGB tensor (3, H, W) in [0, 1].

Resize policy: images are NOT resized. The extractor is fully convolutional with global
pooling, so it reads any size >= 64 px, and resampling would blur the fingerprint's texture.
Instead, images larger than `max_pixels` (width x height) are refused before their pixels are
decoded (Pillow reads the size from the header), which also stops decompression bombs.
Callers that must accept huge images can pass `max_side` to downscale (area filter) to that
longest side; the extraction is then weaker, so it is off by default.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genprint.errors import GenprintError
from genprint.extractor import MIN_SIZE

DEFAULT_MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "WEBP")


def decode_image_bytes(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None, name: str = "image"
) -> torch.Tensor:
    """Decode one PNG/JPEG/WebP image to a float32 tensor (3, H, W) in [0, 1].

    Grey, grey+alpha, palette, CMYK and RGBA images become RGB (alpha is dropped: the extractor
    saw opaque renders). Raises GenprintError for unreadable, truncated, unsupported, too large
    (> max_pixels) or too small (< 64 px a side) images; `name` only labels the message.
    """
    if not data:
        raise GenprintError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our max_pixels governs, checked below
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = img.size
            if width * height > max_pixels:
                raise GenprintError(
                    f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels"
                )
            img.load()  # header checked: only now are the pixels decompressed
    except GenprintError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's hard limit (2x its MAX_IMAGE_PIXELS)
        raise GenprintError(f"{name}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise GenprintError(f"{name}: not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise GenprintError(f"{name}: corrupt or truncated image ({exc})") from None
    if min(width, height) < MIN_SIZE:
        raise GenprintError(f"{name}: {width}x{height} is smaller than the extractor's minimum of {MIN_SIZE} px a side")
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "PA", "LA", "La", "RGBa") else img.convert("RGB")
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        size = (max(MIN_SIZE, round(width * scale)), max(MIN_SIZE, round(height * scale)))
        img = img.resize(size, Image.Resampling.BOX)
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def peek_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels (what a pixel budget is charged)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS).size
    except Image.DecompressionBombError as exc:
        raise GenprintError(f"{name}: refused as a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise GenprintError(f"{name}: not a PNG, JPEG or WebP image") from None


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None) -> torch.Tensor:
    """Read and decode an image file; see decode_image_bytes."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GenprintError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image_bytes(data, max_pixels=max_pixels, max_side=max_side, name=str(path))
