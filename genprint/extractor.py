"""The fingerprint extractor: a fully convolutional net + global pooling, so any image >= 64 px works."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from genprint.config import INTERIOR, MIN_SIZE
from genprint.errors import GenprintError

# First and second differences and a Laplacian: the fixed front end steganalysis nets use to read signals far
# weaker than the content (docs/research.md, "Training: what was measured").
HIGH_PASS = torch.tensor(
    [
        [[0, 0, 0], [0, 1, -1], [0, 0, 0]],
        [[0, 0, 0], [0, 1, 0], [0, -1, 0]],
        [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
        [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]],
        [[1, -2, 1], [0, 0, 0], [0, 0, 0]],
    ],
    dtype=torch.float32,
)


def check_images(shape) -> None:
    """Every reader's input contract: a batch (B, 3, H, W) with both sides at least MIN_SIZE."""
    shape = tuple(shape)
    if len(shape) != 4 or shape[1] != 3:
        raise GenprintError(f"images must have shape (batch, 3, H, W), got {shape}")
    if min(shape[-2:]) < MIN_SIZE:
        raise GenprintError(f"images must be at least {MIN_SIZE} px on each side, got {shape[-2:]}")


def grid_crop(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Both sides cropped (top-left anchored) to multiples of `multiple`, as `genprint render` crops photos."""
    h, w = images.shape[-2:]
    return images[..., : h // multiple * multiple, : w // multiple * multiple]


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers and a skip (a 1x1 strided projection when the block changes size), ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def plain_layers(c_in: int, width: int, depth: int, downsamples: int, highpass: bool) -> list[nn.Module]:
    """`depth` conv-BN-ReLU layers; up to `downsamples` of them stride by 2 (with highpass, only after two
    full-resolution layers)."""
    layers: list[nn.Module] = []
    strided = 0
    for i in range(depth):
        wants = (i >= 2 and i % 2 == 0) if highpass else i % 2 == 1
        stride = 2 if wants and strided < downsamples else 1
        strided += stride == 2
        layers += [
            nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        c_in = width
    return layers


def residual_layers(c_in: int, stages: list[list[int]]) -> list[nn.Module]:
    """A conv-BN-ReLU stem, then stages of residual blocks [[width, blocks], ...]; each stage after the first halves
    the size."""
    width = stages[0][0]
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    for i, (out, blocks) in enumerate(stages):
        for j in range(blocks):
            layers.append(ResidualBlock(width, out, 2 if i and not j else 1))
            width = out
    return layers


def feature_stride(features: nn.Sequential) -> int:
    """How many input px one cell of the net's last feature map spans: 2 for each strided layer on its main path."""
    main = [m.body[0] if isinstance(m, ResidualBlock) else m for m in features]
    return 2 ** sum(isinstance(m, nn.Conv2d) and m.stride[0] == 2 for m in main)


class Extractor(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> bit logits (B, nbits).

    The body is `depth` conv-BN-ReLU layers of `width` channels, up to `downsamples` of them strided, or with `stages`
    ([[width, blocks], ...]) a stem and stages of residual blocks, each stage after the first at half the size: the
    capacity that reads a code with no border cue (docs/research.md, "Choosing the reader"). Global pooling makes the
    readout independent of the image size. With `highpass`, the image first goes through fixed high-pass filters per
    colour channel and is divided by its own contrast, and pooling keeps each channel's log standard deviation
    (log-energy) as well as its mean. With `residual` (high-pass only), the net also reads the image minus its
    re-rendering by the original autoencoder (`attach_reference`). With `margin`, the net reads nothing within that many
    px of the image's edges (less where fewer than INTERIOR px would be left): the decoder's zero padding makes its own
    output's border a cue that is easy to read and that any crop, pad or rotation removes. What it reads is trimmed
    (bottom and right) to a multiple of the net's stride, the sizes it trains on: the last feature row and column of
    any other size half-see zero padding, which pooling mixes into every bit (docs/results.md, default-r5).
    """

    def __init__(
        self,
        nbits: int,
        width: int = 64,
        depth: int = 6,
        downsamples: int = 3,
        highpass: bool = False,
        residual: bool = False,
        margin: int = 0,
        stages: list[list[int]] | None = None,
    ):
        super().__init__()
        if margin < 0:
            raise GenprintError(f"extractor: margin must be >= 0 px, got {margin}")
        if residual and not highpass:
            raise GenprintError(
                "extractor: residual needs highpass: true (the residual goes through the same high-pass front end)"
            )
        if stages is not None and (not stages or any(len(s) != 2 or min(s) < 1 for s in stages)):
            raise GenprintError(f"extractor: stages must be a list of [width, blocks] pairs, each >= 1, got {stages}")
        self.config = dict(
            nbits=nbits,
            width=width,
            depth=depth,
            downsamples=downsamples,
            highpass=highpass,
            residual=residual,
            margin=margin,
            stages=stages,
        )
        self._reference: tuple[Callable[[torch.Tensor], torch.Tensor], int] | None = None
        if highpass:
            self.register_buffer("highpass_kernels", HIGH_PASS.repeat(3, 1, 1)[:, None].clone())
        c_in = 3 * len(HIGH_PASS) * (2 if residual else 1) if highpass else 3
        if stages:
            self.features = nn.Sequential(*residual_layers(c_in, stages))
            c_out = stages[-1][0]
        else:
            self.features = nn.Sequential(*plain_layers(c_in, width, depth, downsamples, highpass))
            c_out = width
        self.head = nn.Linear(c_out * (2 if highpass else 1), nbits)
        self.stride = feature_stride(self.features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images.shape)
        images = self._inner(images)
        if not self.config["highpass"]:
            h = self.features(images * 2 - 1)
            return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))
        with torch.autocast(
            images.device.type, enabled=False
        ):  # the fixed front end in full precision, whatever trains
            planes = [images.float()]
            if self.config["residual"]:
                images, reference = self._re_rendered(planes[0])
                planes = [images, images - reference.float()]
            # Contrast-normalised, then log-energy pooling: the fingerprint shifts ratios of texture energies, and
            # dividing out each image's own contrast removes the largest content-driven variation of those ratios.
            hp = [F.conv2d(p, self.highpass_kernels, padding=1, groups=3) for p in planes]
            x = torch.cat([x / (x.flatten(1).std(1)[:, None, None, None] + 1e-3) for x in hp], 1)
        h = self.features(x).float().flatten(2)
        return self.head(torch.cat([h.mean(2), torch.log(h.std(2) + 1e-3)], 1))

    def attach_reference(self, render: Callable[[torch.Tensor], torch.Tensor], multiple: int) -> None:
        """The residual reader's reference: images (sides multiples of `multiple`) -> the original autoencoder's
        re-rendering. Not a submodule: those weights are the bundle's encoder and reference decoder, saved once."""
        if self.config["margin"] % multiple:
            raise GenprintError(
                f"extractor: margin {self.config['margin']} px must be a multiple of the decoder's grid "
                f"({multiple} px), "
                "or the residual would be read off the grid"
            )
        self._reference = (render, multiple)

    def _inner(self, images: torch.Tensor) -> torch.Tensor:
        """`images` without `margin` px at each edge, or as much of it as leaves INTERIOR px (in whole grid cells),
        trimmed to a multiple of the stride."""
        step, margin = (self._reference[1] if self._reference else 1), self.config["margin"]
        if torch.onnx.is_in_onnx_export():  # sizes as tensors: the exported cut stays a function of the input's size
            h, w = torch._shape_as_tensor(images)[-2:]
            cut = ((torch.minimum(h, w) - INTERIOR) // 2 // step * step).clamp(0, margin)
        else:
            h, w = images.shape[-2:]
            cut = min(max((min(h, w) - INTERIOR) // 2 // step * step, 0), margin)
        return grid_crop(images[..., cut : h - cut, cut : w - cut], self.stride)

    def _re_rendered(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reference is None:
            raise GenprintError(
                "this residual extractor has no reference autoencoder: build it through GenprintModel or load_bundle"
            )
        render, multiple = self._reference
        images = grid_crop(images, multiple)
        with torch.no_grad():  # a fixed reference: no gradient through the autoencoder (cheaper, and trained this way)
            return images, render(images)


def make_extractor(nbits: int, config: dict | None = None) -> nn.Module:
    """The reader a config describes: this module's image Extractor, or with `modality: audio` the waveform reader."""
    config = {k: v for k, v in (config or {}).items() if k != "nbits"}
    if config.get("modality") == "audio":
        from genprint.audio.extractor import make_audio_extractor

        return make_audio_extractor(nbits, **config)
    return Extractor(nbits, **config)
