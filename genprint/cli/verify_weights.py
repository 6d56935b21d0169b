"""genprint verify-weights: whose fingerprint does a leaked decoder carry? Read from its weights alone."""

from __future__ import annotations

from genprint.cli.options import add_db_option, add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify-weights",
        help="recover the fingerprint baked into a leaked decoder's weights and name its user",
        description="Compares the leaked weights with the bundle's decoder, inverts the mapping network and matches "
        "the code against the registry (every tenant). An averaged decoder names its two colluders.",
    )
    p.add_argument("leaked", metavar="EXPORTED", help="what `genprint export` wrote (a file or folder)")
    add_model_option(p, "the bundle the decoder was exported from")
    p.add_argument("--fpr", type=float, default=None, help="false-positive rate (default 1e-6)")
    p.add_argument("--json", action="store_true")
    add_db_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from genprint.bundle import load_bundle
    from genprint.cli.options import model_dir, open_registry
    from genprint.fingerprint import to_hex
    from genprint.registry import NotFoundError
    from genprint.weights import attribute_leak, code_of_scales, read_decoder, recover_scales, untouched_share

    model = load_bundle(model_dir(args))
    state = read_decoder(model, args.leaked)
    scales = recover_scales(model, state)
    logits = code_of_scales(model, scales)
    report = {
        "path": args.leaked,
        "fingerprint": to_hex(logits > 0),
        "weights_explained": round(untouched_share(model, state), 6),
    }
    with open_registry(args) as registry:
        try:
            first, colluder = attribute_leak(
                registry, model, model.bundle_config["model_id"], scales, args.fpr, label=f"weights:{args.leaked}"
            )
        except NotFoundError:
            first = colluder = None
    for key, answer in (("user", first), ("colluder", colluder)):
        report[key] = (
            None
            if answer is None
            else {
                "attributed": answer.attributed,
                "tenant": answer.tenant,
                "user": answer.user,
                "p_value": answer.p_value,
                "distance": answer.distance,
            }
        )
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.leaked}: fingerprint {report['fingerprint']} ({report['weights_explained']:.4%} of the weights "
            "explained by the bundle and the recovered scales)"
        )
        for key in ("user", "colluder"):
            a = report[key]
            if a and a["attributed"]:
                print(f"  {key}: {a['tenant']}/{a['user']} (p = {a['p_value']:.2e})")
        if not (report["user"] and report["user"]["attributed"]):
            print("  attributed to nobody")
    return 0
