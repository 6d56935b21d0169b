#!/usr/bin/env python3
"""Make a trained bundle genprint's shipped default: genprint/models/default, weights stored as float16.

    .venv/bin/python scripts/ship_bundle.py BUNDLE [--note "what measured it"]

Loading casts the weights back to float32. TAEF2's MIT license goes beside the weights (the decoder, reference decoder
and encoder are TAEF2's, fine-tuned). Replace the shipped bundle only with one measured better (docs/results.md),
then measure its null: `genprint calibrate` (no --model) writes the calibration.json shipped beside it.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOTICE = """The decoder, reference decoder and encoder in this bundle are TAEF2 by Ollin Boer Bohan (MIT license,
below), the decoder fine-tuned by genprint. The mapping network and the extractor are genprint's (Apache-2.0).

"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--note", default="", help="recorded in the bundle's metrics as `shipped_because`")
    args = parser.parse_args()

    import torch

    from genprint.bundle import load_bundle, save_bundle
    from genprint.settings import default_bundle_dir, taef2_dir

    model = load_bundle(args.bundle)
    config = model.bundle_config
    metrics = {**config.get("metrics", {}), "shipped_from": config["model_id"], "shipped_because": args.note}
    out = save_bundle(
        model, default_bundle_dir(), train_config=config.get("train"), metrics=metrics, dtype=torch.float16
    )
    license_text = (taef2_dir() / "LICENSE").read_text() if taef2_dir() else None
    if license_text is None:
        sys.exit("error: TAEF2's LICENSE not found (GENPRINT_SHARED): the shipped bundle needs it beside its weights")
    (out / "LICENSE-TAEF2").write_text(NOTICE + license_text)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"shipped {out} (model {load_bundle(out).bundle_config['model_id']}, {size / 2**20:.1f} MiB)")
    if not (out / "calibration.json").exists():
        print("next: `genprint calibrate` measures its null (calibration.json, shipped beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
