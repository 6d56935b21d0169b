"""genprint extract: read the fingerprint bits from images."""

from genprint.cli.eval import add_reader_options


def add_parser(sub) -> None:
    p = sub.add_parser("extract", help="read fingerprint bits from images")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--json", action="store_true", help="one JSON object per line (the default and only format)")
    p.add_argument("images", nargs="+", help="image files")
    add_reader_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    import torch

    from genprint.bundle import load_bundle
    from genprint.data import load_rgb
    from genprint.evaluation import bit_reader
    from genprint.fingerprint import to_hex
    from genprint.model import default_device

    model = load_bundle(args.model, default_device())
    read = bit_reader(model, args.reader, args.inversion_steps, args.max_rotation)
    images = [load_rgb(p) for p in args.images]  # all validated before any output
    for path, image in zip(args.images, images):
        with torch.no_grad():
            prob = torch.sigmoid(torch.as_tensor(read(image[None])))[0]
        print(json.dumps({"path": path, "fingerprint": to_hex((prob > 0.5).numpy()),
                          "bit_probabilities": [round(float(p), 4) for p in prob]}))
    return 0
