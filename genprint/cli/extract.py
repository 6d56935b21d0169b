"""genprint extract: read the fingerprint bits from images."""

from genprint.cli.options import add_model_option, add_reader_options


def add_parser(sub) -> None:
    p = sub.add_parser("extract", help="read fingerprint bits from images (or sound, with an audio bundle)")
    add_model_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line (the default and only format)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (default 4096x4096)")
    p.add_argument("images", nargs="+", help="PNG, JPEG or WebP files (WAV or FLAC for an audio bundle)")
    add_reader_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from genprint.bundle import load_bundle, read_config
    from genprint.cli.options import model_dir, reader_from_args
    from genprint.fingerprint import to_hex
    from genprint.imageio import DEFAULT_MAX_PIXELS, load_image
    from genprint.model import default_device

    bundle = model_dir(args)
    config = read_config(bundle)  # the model, then every input, checked before anything is read or printed
    if config["extractor"].get("modality") == "audio":
        from genprint.audio.signals import load_audio

        images = [load_audio(p) for p in args.images]
    else:
        images = [load_image(p, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS) for p in args.images]
    reader = reader_from_args(load_bundle(bundle, default_device()), args)
    for path, image in zip(args.images, images):
        prob = reader.probabilities(image[None])[0]
        print(
            json.dumps(
                {
                    "path": path,
                    "fingerprint": to_hex((prob > 0.5).astype("uint8")),
                    "bit_probabilities": [round(float(p), 4) for p in prob],
                }
            )
        )
    return 0
