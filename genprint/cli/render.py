"""genprint render: encode images, decode them with a user's fingerprint (or the original decoder)."""

from genprint.cli.options import add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "render",
        help="re-decode images (or sound, with an audio bundle) with a fingerprint, or with the original decoder",
    )
    add_model_option(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--fingerprint", help="the user's fingerprint as hex")
    who.add_argument("--no-fingerprint", action="store_true", help="use the original, unmodified decoder")
    p.add_argument("--input", required=True, help="folder of images (of WAV/FLAC files for an audio bundle)")
    p.add_argument("--output", required=True, help="folder for the PNGs, or WAVs (same base names)")
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
    if model.adapter.modality == "audio":
        return render_audio(model, bits, Path(args.input), Path(args.output))
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


def render_audio(model, bits, folder, out) -> int:
    import torch

    from genprint.audio.data import resolve_clips
    from genprint.audio.signals import load_audio, save_audio

    paths = resolve_clips(folder)
    waves = [load_audio(p, multiple=model.adapter.downscale) for p in paths]  # every input checked first
    out.mkdir(parents=True, exist_ok=True)
    for path, wave in zip(paths, waves):
        with torch.no_grad():
            latents = model.encode(wave[None].to(model._device()))
            decoded = model.decode_reference(latents) if bits is None else model.decode(latents, bits[None])
        save_audio(decoded[0], out / f"{path.stem}.wav")
    print(f"rendered {len(paths)} clips to {out}")
    return 0
