"""genprint render: encode images, decode them with a user's fingerprint (or the original decoder)."""

from genprint.cli.options import add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="re-decode images with a fingerprint, or with the original decoder")
    add_model_option(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--fingerprint", help="the user's fingerprint as hex")
    who.add_argument("--no-fingerprint", action="store_true", help="use the original, unmodified decoder")
    p.add_argument("--input", required=True, help="folder of images")
    p.add_argument("--output", required=True, help="folder for the PNGs (same base names)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (default 4096x4096)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import torch

    from genprint.bundle import load_bundle
    from genprint.cli.options import model_dir
    from genprint.data import list_images, save_rgb
    from genprint.fingerprint import from_hex
    from genprint.imageio import DEFAULT_MAX_PIXELS, load_image
    from genprint.model import default_device

    model = load_bundle(model_dir(args), default_device())
    bits = None if args.no_fingerprint else from_hex(args.fingerprint, model.nbits)
    paths = list_images(args.input)
    images = [
        load_image(p, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS) for p in paths
    ]  # every input checked first
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    k = model.adapter.downscale
    for path, image in zip(paths, images):
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
