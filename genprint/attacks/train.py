"""Differentiable attacks applied to fingerprinted images during training, each with a probability and a range.

Each sample in a batch draws its own attack (at most `max_per_sample`), so one batch covers the
whole stack; `strength` (0..1, from the schedule) scales every range towards the identity so
training can start clean and harden gradually.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from genprint.attacks import ops
from genprint.errors import GenprintError


def _lerp(lo: float, hi: float, t: float) -> float:
    return lo + (hi - lo) * t


def _crop(x, r, s):  # keep a random window of `area` fraction, resized back
    area = _lerp(1.0, r.uniform(*s["area"]), 1)
    h, w = x.shape[-2:]
    ch, cw = max(8, round(h * area**0.5)), max(8, round(w * area**0.5))
    i, j = r.randint(0, h - ch), r.randint(0, w - cw)
    return ops.resize(x[..., i : i + ch, j : j + cw], (h, w))


def _resize(x, r, s):
    h, w = x.shape[-2:]
    f = r.uniform(*s["scale"])
    small = ops.resize(x, (max(8, round(h * f)), max(8, round(w * f))))
    return ops.resize(small, (h, w))


ATTACKS = {
    "crop": (_crop, {"area": (0.5, 1.0)}),
    "resize": (_resize, {"scale": (0.5, 1.0)}),
    "rotation": (lambda x, r, s: ops.rotate(x, r.uniform(-1, 1) * r.uniform(*s["degrees"])), {"degrees": (0.0, 30.0)}),
    "blur": (lambda x, r, s: ops.gaussian_blur(x, r.choice(s["kernels"])), {"kernels": (3, 5, 7)}),
    "noise": (lambda x, r, s: (x + torch.randn_like(x) * r.uniform(*s["std"])).clamp(0, 1), {"std": (0.0, 0.1)}),
    "brightness": (
        lambda x, r, s: ops.adjust_brightness(x, 1 + r.uniform(-1, 1) * r.uniform(*s["delta"])),
        {"delta": (0.0, 0.3)},
    ),
    "contrast": (lambda x, r, s: ops.adjust_contrast(x, r.uniform(*s["factor"])), {"factor": (0.5, 2.0)}),
    "saturation": (lambda x, r, s: ops.adjust_saturation(x, r.uniform(*s["factor"])), {"factor": (0.5, 2.0)}),
    "jpeg": (lambda x, r, s: ops.jpeg_approx(x, r.uniform(*s["quality"])), {"quality": (50.0, 95.0)}),
    "erasing": (lambda x, r, s: _erase(x, r, s), {"area": (0.0, 0.2)}),
}


def _erase(x, r, s):
    h, w = x.shape[-2:]
    a = r.uniform(*s["area"])
    eh, ew = max(1, round(h * a**0.5)), max(1, round(w * a**0.5))
    i, j = r.randint(0, h - eh), r.randint(0, w - ew)
    mask = torch.ones_like(x)
    mask[..., i : i + eh, j : j + ew] = 0
    return x * mask + (1 - mask) * r.random()


def _shrink(params: dict, strength: float) -> dict:
    """Move numeric (lo, hi) ranges towards their mildest end as strength goes to 0."""
    out = {}
    for k, v in params.items():
        if k in ("kernels",):
            out[k] = v
        elif k in ("factor",):
            out[k] = (_lerp(1.0, v[0], strength), _lerp(1.0, v[1], strength))
        elif k in ("area",) and v[1] <= 1.0 and v[0] >= 0.3:  # crop keeps area: mildest is 1
            out[k] = (_lerp(1.0, v[0], strength), _lerp(1.0, v[1], strength))
        elif k == "quality":
            out[k] = (_lerp(100.0, v[0], strength), _lerp(100.0, v[1], strength))
        elif k == "scale":
            out[k] = (_lerp(1.0, v[0], strength), _lerp(1.0, v[1], strength))
        else:
            out[k] = (v[0] * strength, v[1] * strength)
    return out


class SeededDraws:
    """What a checkpoint keeps of a training-attack sampler: its `rng` (random.Random) state."""

    rng: random.Random

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        st = state["rng"]
        self.rng.setstate((st[0], tuple(st[1]), st[2]))


@dataclass
class TrainAttacks(SeededDraws):
    """config: {name: {"p": probability, <range overrides>}}; unknown names are rejected up front."""

    config: dict = field(default_factory=dict)
    max_per_sample: int = 1
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.config) - set(ATTACKS)
        if unknown:
            raise GenprintError(f"unknown training attacks {sorted(unknown)}; known: {sorted(ATTACKS)}")
        self.rng = random.Random(self.seed)

    def __call__(self, images: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        if not self.config or strength <= 0:
            return images
        out = []
        for i in range(images.shape[0]):
            x = images[i : i + 1]
            names = [n for n, c in self.config.items() if self.rng.random() < c.get("p", 0.0)]
            self.rng.shuffle(names)
            for name in names[: self.max_per_sample]:
                fn, defaults = ATTACKS[name]
                params = {
                    **defaults,
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in self.config[name].items() if k != "p"},
                }
                x = fn(x, self.rng, _shrink(params, strength))
            out.append(x)
        return torch.cat(out)
