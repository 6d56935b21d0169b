import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genprint.errors import GenprintError
from genprint.imageio import decode_image_bytes, load_image


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def rgb_array(h=80, w=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_png_roundtrip_exact():
    arr = rgb_array()
    t = decode_image_bytes(encode(Image.fromarray(arr), "PNG"))
    assert t.shape == (3, 80, 96) and t.dtype == torch.float32
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    np.testing.assert_array_equal((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), arr)


@pytest.mark.parametrize("fmt,kwargs", [("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})])
def test_lossy_formats_close(fmt, kwargs):
    arr = np.full((70, 90, 3), (200, 30, 90), dtype=np.uint8)
    t = decode_image_bytes(encode(Image.fromarray(arr), fmt, **kwargs))
    assert t.shape == (3, 70, 90)
    assert np.abs(t.permute(1, 2, 0).numpy() * 255 - arr).max() < 8


def test_webp_lossless_exact():
    arr = rgb_array(64, 64, seed=3)
    t = decode_image_bytes(encode(Image.fromarray(arr), "WEBP", lossless=True))
    np.testing.assert_array_equal((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), arr)


def test_grey_alpha_palette_become_rgb():
    grey = Image.fromarray(np.full((64, 64), 100, np.uint8), "L")
    t = decode_image_bytes(encode(grey, "PNG"))
    assert t.shape == (3, 64, 64) and torch.allclose(t, torch.full_like(t, 100 / 255))
    rgba = Image.fromarray(np.dstack([rgb_array(64, 64), np.full((64, 64), 7, np.uint8)]), "RGBA")
    t = decode_image_bytes(encode(rgba, "PNG"))
    np.testing.assert_array_equal((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), rgb_array(64, 64))
    pal = Image.fromarray(rgb_array(64, 64)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    t = decode_image_bytes(encode(pal, "PNG"))
    np.testing.assert_array_equal(
        (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), np.asarray(pal.convert("RGB"))
    )
    la = Image.fromarray(np.full((64, 64), 9, np.uint8), "L").convert("LA")
    assert decode_image_bytes(encode(la, "PNG")).shape == (3, 64, 64)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"definitely not an image" * 10, "not a PNG"),
        (b"GIF89a" + b"\0" * 100, "not a PNG"),
    ],
)
def test_garbage_refused(data, match):
    with pytest.raises(GenprintError, match=match):
        decode_image_bytes(data)


def test_truncated_refused():
    for fmt in ("PNG", "JPEG", "WEBP"):
        data = encode(Image.fromarray(rgb_array(128, 128)), fmt)
        with pytest.raises(GenprintError, match="corrupt or truncated|not a PNG"):
            decode_image_bytes(data[: len(data) // 2])


def test_corrupt_png_crc_refused():
    data = bytearray(encode(Image.fromarray(rgb_array()), "PNG"))
    data[60] ^= 0xFF  # inside the IDAT chunk: CRC/zlib mismatch
    with pytest.raises(GenprintError, match="corrupt"):
        decode_image_bytes(bytes(data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb must be refused before decoding."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_oversized_and_bomb_refused():
    arr = rgb_array(100, 100)
    with pytest.raises(GenprintError, match="exceeds the limit of 9999 pixels"):
        decode_image_bytes(encode(Image.fromarray(arr), "PNG"), max_pixels=9999)
    decode_image_bytes(encode(Image.fromarray(arr), "PNG"), max_pixels=10000)
    with pytest.raises(GenprintError, match="exceeds the limit|decompression bomb"):
        decode_image_bytes(png_header_only(60000, 60000))
    with pytest.raises(GenprintError, match="decompression bomb"):
        decode_image_bytes(png_header_only(60000, 60000), max_pixels=10**12)


def test_too_small_refused():
    with pytest.raises(GenprintError, match="minimum of 64 px"):
        decode_image_bytes(encode(Image.fromarray(rgb_array(63, 200)), "PNG"))


def test_max_side_downscales():
    t = decode_image_bytes(encode(Image.fromarray(rgb_array(400, 200)), "PNG"), max_side=200)
    assert t.shape == (3, 200, 100)


def test_load_image(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(rgb_array()).save(path)
    assert load_image(path).shape == (3, 80, 96)
    with pytest.raises(GenprintError, match="cannot read"):
        load_image(tmp_path / "missing.png")
