"""genprint export: bake one user's fingerprint into the decoder, in the generator's native format."""

from genprint.cli.options import add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="bake a fingerprint into the decoder weights and write it for model hubs")
    add_model_option(p)
    p.add_argument("--fingerprint", required=True, help="the user's fingerprint as hex")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from genprint.bundle import load_bundle
    from genprint.cli.options import model_dir
    from genprint.fingerprint import from_hex

    model = load_bundle(model_dir(args))
    bits = from_hex(args.fingerprint, model.nbits)
    written = model.adapter.export_native(model.bake(bits), Path(args.out))
    print(f"wrote {model.adapter.family} decoder with the fingerprint baked in: {written}")
    return 0
