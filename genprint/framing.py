"""Decoding a window inside a frame of latent context, so that no edge of the decoder lies within its reach.

A decoder that pads with zeros knows where its edges are, and training that reads near them lets the code anchor to
them: default-r5 wrote its code in a stripe 48-80 px from the decoder's right edge, just past the band that hid the
outermost 48 px (docs/results.md). A training window decoded inside a frame at least the decoder's reach wide carries no
such cue: every pixel of it is what the decoder makes of the content around it. Each upsampling stage is trimmed to
what the window still needs, so the frame costs a fraction of decoding it whole, and the window's pixels equal the
whole framed decode's (the trim's own zero padding stays out of reach too).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch
from torch import nn

from genprint.errors import GenprintError

_UNFRAMED = contextvars.ContextVar("unframed", default=False)


def _layers(decoder: nn.Module, downscale: int) -> list[tuple[str, nn.Module | None, float]]:
    """The decoder's spatial layers in order: ("conv", None, reach in output px) and ("up", module, output px per
    input feature px). Walks `modules()`, which is execution order for sequential decoders such as the TAE family."""
    layers, px = [], float(downscale)
    for module in decoder.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
            radius = max((k - 1) // 2 * d for k, d in zip(module.kernel_size, module.dilation))
            layers.append(("conv", None, radius * px))
        elif isinstance(module, nn.Upsample):
            layers.append(("up", module, px))
            px /= float(module.scale_factor)
    return layers


def decoder_reach(decoder: nn.Module, downscale: int) -> int:
    """How far, in output px, a change at the decoder's input edge (its zero padding) can travel inwards."""
    return math.ceil(sum(r for kind, _, r in _layers(decoder, downscale) if kind == "conv"))


@contextlib.contextmanager
def framed(decoder: nn.Module, frame: int, downscale: int) -> Iterator[None]:
    """While active, `decoder` takes latents with `frame` px (a multiple of `downscale`) of context on each side and
    returns only the window inside them, trimming each upsampling stage's input to the window and the reach of what
    follows."""
    if frame <= 0:
        yield
        return
    pad = frame // downscale
    layers = _layers(decoder, downscale)
    window: list[int] = []  # the window's (height, width) in latent px, set by each call

    def remember(_module, args):
        if _UNFRAMED.get():
            return
        h, w = (side - 2 * pad for side in args[0].shape[-2:])
        if h < 1 or w < 1:
            raise GenprintError(f"latents {tuple(args[0].shape[-2:])} leave no window inside a frame of {pad} a side")
        window[:] = [h, w]

    def trim(x: torch.Tensor, px: float, margin: float) -> torch.Tensor:
        """`x` (feature px of `px` output px) cut to the window and `margin` output px around it."""
        if _UNFRAMED.get():
            return x
        keep = [round(side * downscale / px) + 2 * math.ceil(margin / px) for side in window]
        top, left = ((size - k) // 2 for size, k in zip(x.shape[-2:], keep))
        if top <= 0 and left <= 0:
            return x
        return x[..., max(top, 0) : x.shape[-2] - max(top, 0), max(left, 0) : x.shape[-1] - max(left, 0)]

    hooks = [decoder.register_forward_pre_hook(remember)]
    for i, (kind, module, px) in enumerate(layers):
        if kind == "up":
            margin = sum(r for k, _, r in layers[i + 1 :] if k == "conv")
            hooks.append(module.register_forward_pre_hook(lambda _m, args, px=px, m=margin: (trim(args[0], px, m),)))
    hooks.append(decoder.register_forward_hook(lambda _m, _args, out: trim(out, 1.0, 0.0)))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def unframed() -> Iterator[None]:
    """Inside `framed`, decode as a whole image is decoded, the decoder's own edges included: how deployment renders,
    so what a quality loss there prices is what users see."""
    token = _UNFRAMED.set(True)
    try:
        yield
    finally:
        _UNFRAMED.reset(token)


@contextlib.contextmanager
def framed_model(model, frame: int) -> Iterator[None]:
    """`framed` on both of a GenprintModel's decoders, the fingerprinted one and the original (the quality target)."""
    d = model.adapter.downscale
    with framed(model.decoder, frame, d), framed(model.reference, frame, d):
        yield


def reflect_frame(latents: torch.Tensor, frame: int, downscale: int) -> torch.Tensor:
    """`latents` with `frame` px of context on each side made by reflection: for windows with no real context."""
    pad = frame // downscale
    return torch.nn.functional.pad(latents, (pad, pad, pad, pad), mode="reflect")
