"""Differentiable image operations on (B, 3, H, W) tensors in [0, 1], shared by training and evaluation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: float | None = None) -> torch.Tensor:
    if kernel <= 1:
        return x
    sigma = sigma or 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # OpenCV's default for a kernel size
    r = torch.arange(kernel, dtype=x.dtype, device=x.device) - (kernel - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (kernel // 2,) * 4, mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def rotate(x: torch.Tensor, degrees: torch.Tensor | float) -> torch.Tensor:
    """Rotate about the centre, same size, zero fill (as torchvision's rotate)."""
    b = x.shape[0]
    theta = torch.as_tensor(degrees, dtype=x.dtype, device=x.device).expand(b) * math.pi / 180
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    mat = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def grey(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def adjust_contrast(x: torch.Tensor, factor) -> torch.Tensor:
    mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return (mean + _per_sample(factor, x) * (x - mean)).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor) -> torch.Tensor:
    g = grey(x)
    return (g + _per_sample(factor, x) * (x - g)).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, factor) -> torch.Tensor:
    return (x * _per_sample(factor, x)).clamp(0, 1)


def _per_sample(v, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)


# --- differentiable JPEG approximation: real 8x8 DCT + quantisation, with a soft rounding ---
_LUMA = torch.tensor(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=torch.float32,
).view(8, 8)
_CHROMA = torch.full((8, 8), 99.0)
_CHROMA[:4, :4] = torch.tensor(
    [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=torch.float32
)


def _dct_matrix(device, dtype) -> torch.Tensor:
    n = torch.arange(8, dtype=dtype, device=device)
    m = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def _quality_scale(quality: float) -> float:
    quality = min(max(quality, 1), 100)
    return (5000 / quality if quality < 50 else 200 - 2 * quality) / 100


def soft_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through-like cubic term so gradients flow (Shin & Song, 2017)."""
    return torch.round(x) + (x - torch.round(x)) ** 3


def jpeg_approx(x: torch.Tensor, quality: float) -> torch.Tensor:
    """YCbCr, 8x8 DCT, quantisation by the standard tables at `quality`, soft rounding, inverse."""
    b, _, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255
    r, g, bl = y[:, 0], y[:, 1], y[:, 2]
    ycc = (
        torch.stack(
            [
                0.299 * r + 0.587 * g + 0.114 * bl,
                -0.168736 * r - 0.331264 * g + 0.5 * bl + 128,
                0.5 * r - 0.418688 * g - 0.081312 * bl + 128,
            ],
            1,
        )
        - 128
    )
    H, W = ycc.shape[-2:]
    blocks = ycc.view(b, 3, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)
    d = _dct_matrix(x.device, x.dtype)
    coef = d @ blocks @ d.T
    s = _quality_scale(quality)
    q = torch.stack([_LUMA, _CHROMA, _CHROMA]).to(x.device, x.dtype).mul(s).clamp(min=1).view(1, 3, 1, 1, 8, 8)
    coef = soft_round(coef / q) * q
    blocks = d.T @ coef @ d
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, 3, H, W) + 128
    yy, cb, cr = ycc[:, 0], ycc[:, 1] - 128, ycc[:, 2] - 128
    rgb = torch.stack([yy + 1.402 * cr, yy - 0.344136 * cb - 0.714136 * cr, yy + 1.772 * cb], 1) / 255
    return rgb[..., :h, :w].clamp(0, 1)
