"""genprint eval: quality, bit and attribution accuracy (clean and per attack), false positives, plots."""

from genprint.cli.options import add_model_option, add_reader_options


def add_parser(sub) -> None:
    from genprint.evaluation import EvalSettings

    d = EvalSettings()
    p = sub.add_parser("eval", help="evaluate a bundle on held-out photos; writes report.json and plots")
    add_model_option(p)
    p.add_argument("--data", help="photo folder (default: shared photos); the bundle's held-out split is used")
    p.add_argument("--users", type=int, default=d.users, help="registered users to attribute against")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fpr", type=float, default=d.fpr, help="false-positive rate per query for the decision")
    p.add_argument("--size", type=int, help=f"centre-crop size of the evaluation images (default {d.size})")
    p.add_argument("--seconds", type=float, help="audio bundles: seconds read of each held-out clip (default 2)")
    p.add_argument(
        "--samples-per-photo", type=int, help=f"users each photo is rendered for (default {d.samples_per_photo})"
    )
    p.add_argument(
        "--photos",
        type=int,
        help="only the first N held-out photos (default: all; for the slow inversion reader); "
        "audio bundles: N held-out clips (default 64)",
    )
    p.add_argument("--holdout", type=float, help="override the held-out fraction (0: evaluate on every photo)")
    p.add_argument("--suites", help=f"attack suites, comma separated (default {','.join(d.suites)})")
    p.add_argument(
        "--attacks",
        help="only these attacks of the suites, comma separated (default: all; "
        "none: clean images and false positives only)",
    )
    add_reader_options(p, cascade=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from genprint import calibration
    from genprint.attacks import ATTACK_SUITES
    from genprint.bundle import load_bundle
    from genprint.cli.options import model_dir
    from genprint.errors import GenprintError
    from genprint.evaluation import EvalSettings, evaluate
    from genprint.model import default_device

    if args.photos is not None and args.photos < 1:
        raise GenprintError(f"--photos must be at least 1, got {args.photos}")
    bundle = model_dir(args)
    model = load_bundle(bundle, default_device())
    if model.adapter.modality == "audio":
        from genprint.audio import HELD_OUT_SECONDS
        from genprint.audio.evaluation import evaluate_audio

        if args.reader != "cnn":
            raise GenprintError(f"audio bundles are read by the cnn reader only, not {args.reader!r}")
        image_only = [
            flag
            for flag, value in (
                ("--size", args.size),
                ("--samples-per-photo", args.samples_per_photo),
                ("--holdout", args.holdout),
                ("--suites", args.suites),
            )
            if value is not None
        ]
        if image_only:
            raise GenprintError(
                f"{', '.join(image_only)}: for image bundles; an audio bundle reads --photos held-out clips "
                "for --seconds each, under the audio attack suite"
            )
        report = evaluate_audio(
            model,
            args.data,
            args.out,
            users=args.users,
            fpr=args.fpr,
            clips=args.photos,
            attacks=chosen_attacks(args.attacks),
            seconds=HELD_OUT_SECONDS if args.seconds is None else args.seconds,
        )
        print_summary(report)
        return 0
    if args.seconds is not None:
        raise GenprintError("--seconds is for audio bundles; images are read at --size")
    d = EvalSettings()
    suites = d.suites if args.suites is None else tuple(s for s in args.suites.split(",") if s)
    if unknown := set(suites) - set(ATTACK_SUITES):
        raise GenprintError(f"unknown attack suites {sorted(unknown)}; known: {sorted(ATTACK_SUITES)}")
    samples_per_photo = d.samples_per_photo if args.samples_per_photo is None else args.samples_per_photo
    if args.users < samples_per_photo:
        raise GenprintError("--users must be at least --samples-per-photo")
    settings = EvalSettings(
        users=args.users,
        fpr=args.fpr,
        size=d.size if args.size is None else args.size,
        samples_per_photo=samples_per_photo,
        photos=args.photos,
        holdout=args.holdout,
        suites=suites,
        reader=args.reader,
        inversion_steps=args.inversion_steps,
        escalate_p=args.escalate_p,
        max_rotation=args.max_rotation,
        attacks=chosen_attacks(args.attacks),
    )
    report = evaluate(model, args.data, args.out, settings, calibration=calibration.load(bundle))
    print_summary(report)
    return 0


def chosen_attacks(arg: str | None) -> tuple[str, ...] | None:
    """--attacks as EvalSettings.attacks: None for every attack of the suites, () for none."""
    if not arg:
        return None
    return () if arg == "none" else tuple(a for a in arg.split(",") if a)


def print_summary(report: dict) -> None:
    from rich.table import Table

    from genprint.cli import console as cli_console

    d = report["decision"]
    console = cli_console()
    sources = (
        f"{report['test_clips']} held-out clips"
        if "test_clips" in report
        else f"{report['test_photos']} held-out photos"
    )
    console.print(
        f"[bold]{report['samples']}[/] samples read by the {report['settings']['reader']} reader "
        f"from {sources}; {report['quality_summary']}; attributed at distance <= {d['max_distance']} "
        f"of {report['nbits']} bits ({d['users']} users, FPR {d['fpr_per_query']:g})"
    )
    table = Table("condition", "suite", "bit acc", "attribution (binomial)", "attribution (soft)", "false attr.")
    for name, r in report["results"].items():
        style = "red" if r["bit_accuracy"] < 0.9 else ""
        table.add_row(
            name,
            r.get("suite", ""),
            f"{r['bit_accuracy']:.3f}",
            f"{r['attribution_accuracy']:.3f}",
            f"{r['soft_attribution_accuracy']:.3f}",
            f"{r['false_attributions']} / {r['soft_false_attributions']}",
            style=style,
        )
    console.print(table)
    for name, fp in report["false_positives"].items():
        console.print(
            f"false positives on {name}: binomial {fp['attributed']}, soft {fp['soft_attributed']} of {fp['queries']} "
            f"(closest distance {fp['min_distance']}, smallest soft p-value {fp['soft_min_p_value']:.2g})"
        )
    calibrated = d.get("calibration")
    if calibrated is not None:
        verdict = "vouches for" if calibrated["vouches_for_fpr"] else "cannot vouch for"
        console.print(
            f"calibration: {calibrated['null_queries']} null queries {verdict} the soft rule at FPR "
            f"{d['fpr_per_query']:g} (down to {calibrated['supported_fpr']:.1g})"
        )
    elif "test_photos" in report:
        console.print("no calibration.json: the soft rule rests on the exact null of random codes (genprint calibrate)")
    reading = report["reading"]
    escalated = "" if reading["escalated_share"] is None else f", {reading['escalated_share']:.1%} escalated"
    item = "clip" if report.get("modality") == "audio" else "image"
    console.print(f"{reading['reader']} reader: {reading['seconds_per_image']:.3f} s per {item}{escalated}")
