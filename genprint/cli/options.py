"""Options several verbs share: which model, which reader, where the registry is, and who is asking."""

from __future__ import annotations

import argparse


def add_model_option(parser: argparse.ArgumentParser, what: str = "the model bundle") -> None:
    parser.add_argument(
        "--model",
        metavar="BUNDLE",
        default=None,
        help=f"{what}: a bundle directory, s3://... or models:/NAME@ALIAS (default: genprint's shipped bundle)",
    )


def model_dir(args):
    """The local bundle directory of --model (the shipped default bundle when it is not given)."""
    from pipelines.tracking import resolve_model

    return resolve_model(args.model)


def add_reader_options(parser: argparse.ArgumentParser, rotation: bool = True, cascade: bool = False) -> None:
    """--reader and the inversion reader's --inversion-steps (and --max-rotation, where the verb passes it on);
    `cascade` for the verbs that attribute."""
    from genprint import attribution, readers
    from genprint.inversion import MAX_ROTATION, STEPS

    parser.add_argument(
        "--reader",
        choices=attribution.READERS if cascade else readers.READERS,
        default="cnn",
        help="cnn: the extractor network (high rate); inversion: fit latent and code through the decoder "
        "(seconds per image, forensic)"
        + ("; cascade: the CNN, and the inversion reader for the images the CNN leaves uncertain" if cascade else ""),
    )
    parser.add_argument("--inversion-steps", type=int, default=STEPS, help="fitting steps of the inversion reader")
    if cascade:
        parser.add_argument(
            "--escalate-p",
            type=escalation_band,
            default=attribution.ESCALATE_P,
            metavar="P",
            help="the cascade reads again what the CNN did not attribute but gave a corrected p-value <= P "
            f"(default {attribution.ESCALATE_P:g}; images with no code escalate at rate P; 1: all unattributed)",
        )
    if not rotation:
        return
    parser.add_argument(
        "--max-rotation",
        type=float,
        default=MAX_ROTATION,
        metavar="DEG",
        help="the inversion reader searches rotations up to DEG degrees either way (0: uploads are upright; "
        "saves the search, about 6 s per 256 px image on 2 CPU cores)",
    )


def escalation_band(text: str) -> float:
    """--escalate-p: a probability, 0 to 1."""
    from genprint.attribution import check_escalate_p
    from genprint.errors import GenprintError

    try:
        return check_escalate_p(float(text))
    except (ValueError, GenprintError):
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text!r}") from None


def reader_from_args(model, args):
    """The reader --reader names, for a bundle directory or a loaded model."""
    from genprint.readers import make_reader

    return make_reader(model, args.reader, inversion_steps=args.inversion_steps, max_rotation=args.max_rotation)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="registry database URL (sqlite:///path.db or postgresql+psycopg://...); default $GENPRINT_DB, "
        "else $GENPRINT_HOME/registry.db",
    )


def add_api_key_option(parser: argparse.ArgumentParser, required_for: str) -> None:
    parser.add_argument("--api-key", default=None, help=f"tenant API key ({required_for}); default $GENPRINT_API_KEY")
    parser.add_argument("--tenant", default=None, help="tenant name; checked against the API key's tenant")


def open_registry(args):
    from genprint.registry import Registry

    return Registry(args.db)


def authenticated_tenant(registry, args, required: bool = True):
    """The tenant of --api-key / $GENPRINT_API_KEY (None when not required and none given)."""
    from genprint.errors import GenprintError
    from genprint.settings import api_key

    key = args.api_key or api_key()
    if not key and not required:
        if args.tenant:
            raise GenprintError("--tenant needs the tenant's API key (--api-key or $GENPRINT_API_KEY)")
        return None
    tenant = registry.authenticate(key)
    if args.tenant and args.tenant != tenant.name:
        raise GenprintError(f"the API key belongs to another tenant than {args.tenant!r}")
    return tenant
