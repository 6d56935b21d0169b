"""genprint attack-weights: what a user holding an exported decoder could do to its weights (research question 2)."""

from __future__ import annotations

from genprint.cli.options import add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "attack-weights",
        help="attack an exported decoder's weights (noise, pruning, int8, averaging, fine-tuning, purification)",
        description="Writes the attacked decoder in the format `genprint export` wrote it, for `verify-weights` and "
        "for rendering. --strength is sigma as a fraction of each tensor's std (noise), the pruned fraction (prune) "
        "or the fine-tuning steps (finetune: towards the original decoder's renders; purify: towards the photos "
        "themselves, needing no original decoder); average takes --other, a second user's export.",
    )
    p.add_argument("leaked", metavar="EXPORTED", help="what `genprint export` wrote (a file or folder)")
    p.add_argument("--kind", required=True, choices=["noise", "prune", "int8", "average", "finetune", "purify"])
    p.add_argument("--strength", type=float, default=0.0)
    p.add_argument("--other", help="average: a second user's export")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    add_model_option(p, "the bundle the decoder was exported from (its architecture; fine-tuning's original)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from genprint import weights
    from genprint.bundle import load_bundle
    from genprint.cli.options import model_dir
    from genprint.data import resolve_photos, split
    from genprint.errors import GenprintError

    model = load_bundle(model_dir(args))
    state = weights.read_decoder(model, args.leaked)
    if args.kind == "noise":
        attacked = weights.noise(state, args.strength, args.seed)
    elif args.kind == "prune":
        attacked = weights.prune(state, args.strength)
    elif args.kind == "int8":
        attacked = weights.int8(state)
    elif args.kind == "average":
        if not args.other:
            raise GenprintError("--kind average needs --other, a second user's export")
        attacked = weights.average(state, weights.read_decoder(model, args.other))
    else:
        photos, _ = split(resolve_photos(None), model.bundle_config.get("train", {}).get("holdout", 0.2))
        target = "photos" if args.kind == "purify" else "original"
        bank = weights.finetuning_bank(model, photos, seed=args.seed, target=target)
        attacked = weights.finetune(model, state, bank, int(args.strength))
    decoder = model.adapter.copy_decoder()
    decoder.load_state_dict(attacked)
    written = model.adapter.export_native(decoder, Path(args.out))
    print(f"wrote the {args.kind}-attacked {model.adapter.family} decoder: {written}")
    return 0
