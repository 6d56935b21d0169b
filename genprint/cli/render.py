"""genprint render: encode images, decode them with a user's fingerprint (or the original decoder)."""


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="re-decode images with a fingerprint, or with the original decoder")
    p.add_argument("--model", required=True, help="bundle directory")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--fingerprint", help="the user's fingerprint as hex")
    who.add_argument("--no-fingerprint", action="store_true", help="use the original, unmodified decoder")
    p.add_argument("--input", required=True, help="folder of images")
    p.add_argument("--output", required=True, help="folder for the PNGs (same base names)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import torch

    from genprint.bundle import load_bundle
    from genprint.data import list_images, load_rgb, save_rgb
    from genprint.fingerprint import from_hex
    from genprint.model import default_device

    model = load_bundle(args.model, default_device())
    bits = None if args.no_fingerprint else from_hex(args.fingerprint, model.nbits)
    paths = list_images(args.input)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    k = model.adapter.downscale
    for path in paths:
        image = load_rgb(path)
        h, w = image.shape[-2:]
        if h % k or w % k:
            print(f"{path.name}: {w}x{h} is not a multiple of {k}; cropped to {w // k * k}x{h // k * k} (top-left)")
            image = image[:, : h // k * k, : w // k * k]
        with torch.no_grad():
            latents = model.encode(image[None].to(model._device()))
            decoded = model.decode_reference(latents) if bits is None else model.decode(latents, bits[None])
        save_rgb(decoded[0], out / f"{path.stem}.png")
    print(f"rendered {len(paths)} images to {out}")
    return 0
