#!/usr/bin/env python3
"""Probe: can an extractor learn to read a FIXED random modulation? (docs/research.md, "Training: what was measured").

    .venv/bin/python scripts/extractor_probe.py [STRENGTH=0.05] [all|CONV,CONV...] [oracle,hpf,plain]

Decodes 4,096 training and 512 held-out latent crops (held-out photos) with a random linear mapping of the given
strength, then trains three readers on them: genprint's Extractor on the exact residual (image - original), on the
image behind its fixed high-pass front end (`highpass: true`, steganalysis-style), and on the plain image.
Prints held-out bit accuracy. The probe rows of docs/research.md ran before the high-pass reader divided each image by
its own contrast and pooled log-energies; today's reader is what this script trains.
"""

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from genprint.config import load_config  # noqa: E402
from genprint.data import LatentBank, resolve_photos, split  # noqa: E402
from genprint.extractor import Extractor  # noqa: E402
from genprint.metrics import psnr  # noqa: E402
from genprint.training import build_model  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    strength = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
    modulate = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] != "all" else None
    which = sys.argv[3].split(",") if len(sys.argv) > 3 else ["oracle", "hpf", "plain"]
    cfg = load_config("smoke", {"modulate": modulate, "mapping": {"hidden": 256, "depth": 0, "scale_range": 1.0}})
    model = build_model(cfg)
    with torch.no_grad():
        for a in model.mapping.affines:
            a.weight.normal_(0, strength)
    train_paths, test_paths = split(resolve_photos(None), 0.2)

    def make(paths, n, seed):
        bank, g = LatentBank(model.encode, paths, 8, 64, seed=seed), torch.Generator().manual_seed(seed)
        xs, refs, bits = [], [], []
        with torch.no_grad():
            for _ in range(n // 64):
                z, b = bank.sample(64), torch.randint(0, 2, (64, cfg.nbits), generator=g).float()
                xs.append(model.decode(z, b)), refs.append(model.decode_reference(z)), bits.append(b)
        return torch.cat(xs), torch.cat(refs), torch.cat(bits)

    start = time.time()
    x_tr, r_tr, b_tr = make(train_paths, 4096, 1)
    x_te, r_te, b_te = make(test_paths, 512, 2)
    print(f"data {time.time() - start:.0f}s  psnr {psnr(x_tr, r_tr).mean():.1f} dB", flush=True)

    def fit(name, net, x, x_test, epochs=6):
        opt, start = torch.optim.AdamW(net.parameters(), 1e-3), time.time()
        for ep in range(epochs):
            net.train()
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 32):
                idx = perm[i : i + 32]
                loss = F.binary_cross_entropy_with_logits(net(x[idx]), b_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                acc = ((net(x_test) > 0).float() == b_te).float().mean()
            print(f"{name} epoch {ep}: held-out bit accuracy {acc:.3f}  {time.time() - start:.0f}s", flush=True)

    if "oracle" in which:
        fit("residual", Extractor(cfg.nbits), (x_tr - r_tr) * 20 + 0.5, (x_te - r_te) * 20 + 0.5)
    if "hpf" in which:
        fit("high-pass", Extractor(cfg.nbits, highpass=True), x_tr, x_te)
    if "plain" in which:
        fit("extractor", Extractor(cfg.nbits), x_tr, x_te)


if __name__ == "__main__":
    main()
