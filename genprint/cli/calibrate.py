"""genprint calibrate: measure the soft rule's false positives on images that carry no code of the model."""

from genprint.cli.options import add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="measure the null: false positives on images with no code of the model",
        description="Reads photos, the original decoder's renders, renders of another fingerprinting "
        "model and attacked versions of each, and writes how many would have been attributed at each "
        "false-positive rate (calibration.json beside the bundle, unless --out).",
    )
    add_model_option(p)
    p.add_argument("--data", help="photo folder (default: shared photos)")
    p.add_argument("--null-images", type=int, default=3000, help="null queries to read (default 3000)")
    p.add_argument("--users", type=int, default=10_000, help="registered users simulated (default 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="where to write the JSON (default BUNDLE/calibration.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from genprint.bundle import load_bundle
    from genprint.calibration import FILE, calibrate
    from genprint.cli.options import model_dir
    from genprint.errors import GenprintError
    from genprint.model import default_device
    from genprint.readers import make_reader

    if args.null_images < 30 or args.users < 1:
        raise GenprintError("--null-images must be at least 30 and --users at least 1")
    bundle = model_dir(args)
    model = load_bundle(bundle, default_device())
    report = calibrate(model, make_reader(bundle, "cnn"), args.data, args.null_images, args.users, args.seed)
    out = Path(args.out) if args.out else bundle / FILE
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("null_queries", "attributed_at", "smallest_p_value", "supported_fpr")}))
    print(f"wrote {out}")
    return 0
