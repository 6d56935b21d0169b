"""Evaluation attacks, applied as a real user would: PIL for JPEG and enhancement, on uint8 images.

Two suites: WOUAF's sweep (crop padding, rotation, blur, brightness, noise, erasing, JPEG and
five combined levels) and Stable Signature's set (crop/resize/rotation/JPEG/enhancements and a
combination). Each attack is deterministic given its seed so reports are reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

from genprint.attacks import ops


def to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray((x.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8))


def from_pil(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255


def jpeg(quality: int):
    def f(im: Image.Image, rng) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return f


def center_crop_area(keep: float):
    """Keep a centred window of `keep` of the area (the image gets smaller, no resize)."""

    def f(im, rng):
        w, h = im.size
        cw, ch = max(64, round(w * keep**0.5)), max(64, round(h * keep**0.5))
        left, top = (w - cw) // 2, (h - ch) // 2
        return im.crop((left, top, left + cw, top + ch))

    return f


def crop_pad(fraction: float):
    """WOUAF's crop: cut `fraction` of each side at random and pad back to size with black."""

    def f(im, rng):
        w, h = im.size
        dx, dy = int(w * fraction), int(h * fraction)
        left, top = rng.integers(0, dx + 1), rng.integers(0, dy + 1)
        arr = np.zeros((h, w, 3), np.uint8)
        src = np.array(im)
        arr[top : h - dy + top, left : w - dx + left] = src[top : h - dy + top, left : w - dx + left]
        return Image.fromarray(arr)

    return f


def resize(scale: float):
    return lambda im, rng: im.resize(
        (max(64, round(im.size[0] * scale)), max(64, round(im.size[1] * scale))), Image.BICUBIC
    )


def rotate(degrees: float):
    return lambda im, rng: im.rotate(degrees, resample=Image.BILINEAR)


def blur(kernel: int):
    return lambda im, rng: to_pil(ops.gaussian_blur(from_pil(im)[None], kernel)[0])


def noise(std: float):
    return lambda im, rng: to_pil(
        (from_pil(im) + torch.from_numpy(rng.normal(0, std, (3, im.size[1], im.size[0]))).float()).clamp(0, 1)
    )


def brightness_shift(delta: float):
    return lambda im, rng: to_pil((from_pil(im) + delta).clamp(0, 1))


def enhance(kind: str, factor: float):
    cls = {
        "brightness": ImageEnhance.Brightness,
        "contrast": ImageEnhance.Contrast,
        "saturation": ImageEnhance.Color,
        "sharpness": ImageEnhance.Sharpness,
    }[kind]
    return lambda im, rng: cls(im).enhance(factor)


def erase(area: float):
    def f(im, rng):
        arr = np.array(im)
        h, w = arr.shape[:2]
        eh, ew = max(1, round(h * area**0.5)), max(1, round(w * area**0.5))
        i, j = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        arr[i : i + eh, j : j + ew] = 0
        return Image.fromarray(arr)

    return f


def chain(*fs):
    def f(im, rng):
        for g in fs:
            im = g(im, rng)
        return im

    return f


@dataclass(frozen=True)
class Attack:
    name: str
    suite: str
    fn: Callable

    def __call__(self, image: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """(3, H, W) in [0, 1] -> attacked (3, H', W'), through 8-bit PIL as a saved image would be."""
        return from_pil(self.fn(to_pil(image), np.random.default_rng(seed)))


def _wouaf() -> list[Attack]:
    a = []
    a += [Attack(f"crop_pad_{int(f * 100)}pct", "wouaf", crop_pad(f)) for f in (0.02, 0.05, 0.10)]
    a += [Attack(f"rotation_{d}", "wouaf", rotate(d)) for d in (10, 20, 30)]
    a += [Attack(f"blur_k{k}", "wouaf", blur(k)) for k in (3, 5, 7)]
    a += [Attack(f"brightness_{'+' if d > 0 else ''}{d}", "wouaf", brightness_shift(d)) for d in (-0.3, -0.1, 0.1, 0.3)]
    a += [Attack(f"noise_{s}", "wouaf", noise(s)) for s in (0.05, 0.1, 0.2)]
    a += [Attack(f"erasing_{e}", "wouaf", erase(e)) for e in (0.05, 0.1, 0.2)]
    a += [Attack(f"jpeg_{q}", "wouaf", jpeg(q)) for q in (90, 70, 50)]
    levels = [
        (0.02, 10, 3, 0.1, 0.05, 0.05, 90),
        (0.04, 15, 3, 0.15, 0.08, 0.08, 80),
        (0.06, 20, 5, 0.2, 0.1, 0.1, 70),
        (0.08, 25, 5, 0.25, 0.15, 0.15, 60),
        (0.10, 30, 7, 0.3, 0.2, 0.2, 50),
    ]
    for i, (c, r, k, b, n, e, q) in enumerate(levels, 1):
        a.append(
            Attack(
                f"combined_level{i}",
                "wouaf_combined",
                chain(crop_pad(c), rotate(r), blur(k), brightness_shift(b), noise(n), erase(e), jpeg(q)),
            )
        )
    return a


def _stable_signature() -> list[Attack]:
    return [
        Attack("crop_keep_50pct", "stable_signature", center_crop_area(0.5)),
        Attack("crop_keep_10pct", "stable_signature", center_crop_area(0.1)),
        Attack("resize_50pct", "stable_signature", resize(0.5)),
        Attack("rotation_25", "stable_signature", rotate(25)),
        Attack("jpeg_80", "stable_signature", jpeg(80)),
        Attack("jpeg_50", "stable_signature", jpeg(50)),
        *[
            Attack(f"{kind}_{f}", "stable_signature", enhance(kind, f))
            for kind in ("brightness", "contrast", "saturation", "sharpness")
            for f in (1.5, 2.0)
        ],
        Attack(
            "jpeg80_brightness1.5_crop50",
            "stable_signature_combined",
            chain(jpeg(80), enhance("brightness", 1.5), center_crop_area(0.5)),
        ),
    ]


ATTACK_SUITES: dict[str, Callable[[], list[Attack]]] = {"wouaf": _wouaf, "stable_signature": _stable_signature}


def attack_suite(names: list[str] | None = None) -> list[Attack]:
    attacks = []
    for name in names or list(ATTACK_SUITES):
        attacks += ATTACK_SUITES[name]()
    return attacks
