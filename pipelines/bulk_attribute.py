#!/usr/bin/env python3
"""Attribute every image under a folder or an S3 prefix with Ray Data, writing Parquet.

    python -m pipelines.bulk_attribute SOURCE OUT --model BUNDLE [--registry URL] [--tenant NAME] [--batch 32] [--actors 2]
        [--reader inversion]

SOURCE: a local folder or s3://bucket/prefix (PNG, JPEG and WebP files, recursively). OUT: a local folder or
s3://bucket/prefix that receives the Parquet files. One row per image: path, attributed, tenant, user,
fingerprint_id, revoked, distance, p_value, runner_up_distance, model_id, error (set, and the rest empty, for a file
that is not a usable image: one bad file never stops the job). Actors each hold one reader (an ONNX Runtime session,
or with --reader inversion the inversion reader, on a GPU each when the cluster has them) and one registry matcher
(serving's AttributionEngine); images are read and decoded in parallel tasks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from urllib.parse import urlparse

from genprint.errors import GenprintError

EXTENSIONS = ["png", "jpg", "jpeg", "webp", "PNG", "JPG", "JPEG", "WEBP"]
# The output columns and their Arrow types: fixed, so a block whose column is all empty is not typed null and every
# Parquet file has the one schema.
FIELDS = [("path", "string"), ("attributed", "bool"), ("tenant", "string"), ("user", "string"), ("fingerprint_id", "string"),
          ("revoked", "bool"), ("distance", "int64"), ("p_value", "float64"), ("runner_up_distance", "int64"),
          ("model_id", "string"), ("error", "string")]
COLUMNS = [name for name, _ in FIELDS]
log = logging.getLogger(__name__)


def s3_filesystem():
    """A pyarrow S3 filesystem from the same AWS chain boto3 uses (so SeaweedFS/MinIO endpoints work too)."""
    import boto3
    import pyarrow.fs as pafs

    from genprint.storage import s3_client

    session = boto3.session.Session()
    creds = session.get_credentials()
    if creds is None:
        raise GenprintError("no AWS credentials found for s3:// (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
    creds = creds.get_frozen_credentials()
    endpoint = urlparse(s3_client().meta.endpoint_url)
    return pafs.S3FileSystem(access_key=creds.access_key, secret_key=creds.secret_key, session_token=creds.token,
                             region=session.region_name or "us-east-1", endpoint_override=endpoint.netloc,
                             scheme=endpoint.scheme or "https", force_virtual_addressing=False)


def location(url: str):
    """(path for pyarrow, filesystem or None for local)."""
    if url.startswith("s3://"):
        return url[len("s3://"):].rstrip("/"), s3_filesystem()
    return url, None


class Attribute:
    """A Ray Data actor: decode a batch of files, read their bits in one extractor call per size, match in the registry."""

    def __init__(self, settings: dict, tenant: str | None):
        import pyarrow as pa

        from serving.attribution import AttributionEngine
        from serving.settings import ServeSettings

        self.settings = ServeSettings(**settings)
        self.engine = AttributionEngine(self.settings)
        self.scope = self.engine.registry.tenant(tenant) if tenant else None
        self.schema = pa.schema(FIELDS)

    def __call__(self, batch: dict):
        import pyarrow as pa

        from genprint.imageio import decode_image_bytes

        rows: list[dict] = []
        good, images = [], []
        for i, (path, data) in enumerate(zip(batch["path"], batch["bytes"])):
            rows.append({c: None for c in COLUMNS} | {"path": str(path), "model_id": self.engine.model_id})
            try:
                images.append(decode_image_bytes(data, max_pixels=self.settings.max_pixels, name=str(path)).numpy())
                good.append(i)
            except GenprintError as exc:
                rows[i]["error"] = str(exc)
        if good:
            for i, answer in zip(good, self.engine.attribute([(image, self.scope) for image in images])):
                rows[i].update({k: answer[k] for k in COLUMNS if k in answer})
        return pa.Table.from_pylist(rows, schema=self.schema)


def bulk_attribute(source: str, out: str, model: str, registry_url: str = "", tenant: str | None = None, batch_size: int = 32,
                   actors: int = 1, max_pixels: int | None = None, reader: str = "cnn") -> int:
    """Run the job on the current Ray cluster (or a local one); returns the number of rows written."""
    import ray

    from serving.settings import ServeSettings

    args = {"model": model, "registry_url": registry_url, "reader": reader} | ({"max_pixels": max_pixels} if max_pixels else {})
    settings = ServeSettings.load(args).model_dump()
    src, src_fs = location(source)
    dst, dst_fs = location(out)
    try:
        ds = ray.data.read_binary_files(src, include_paths=True, filesystem=src_fs, file_extensions=EXTENSIONS)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise GenprintError(f"cannot list images under {source}: {str(exc).splitlines()[0]}") from None
    # The inversion reader decodes through the model at every step: a GPU per actor where the cluster has them.
    gpus = 1 if reader == "inversion" and ray.cluster_resources().get("GPU") else 0
    results = ds.map_batches(Attribute, fn_constructor_kwargs={"settings": settings, "tenant": tenant}, batch_size=batch_size,
                             concurrency=actors, num_gpus=gpus, batch_format="default")
    results = results.materialize()
    results.write_parquet(dst, filesystem=dst_fs)
    return results.count()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder or s3://bucket/prefix of images")
    parser.add_argument("out", help="folder or s3://bucket/prefix for the Parquet output")
    parser.add_argument("--model", required=True, help="bundle directory, s3://... or models:/NAME@ALIAS")
    parser.add_argument("--registry", default="", help="registry URL (default: $GENPRINT_DB or ~/.genprint/registry.db)")
    parser.add_argument("--tenant", help="only this tenant's users are candidates (default: every tenant)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--actors", type=int, default=1, help="attribution actors (each one reader)")
    parser.add_argument("--reader", choices=["cnn", "inversion"], default="cnn",
                        help="cnn: the ONNX extractor (high rate); inversion: the forensic reader (far more bits, slow)")
    args = parser.parse_args(argv)
    import ray

    started = not ray.is_initialized()
    ray_dir = None
    if started:  # a local Ray; its temp dir is a short path (socket names) and is removed afterwards
        import tempfile

        ray_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
        ray.init(_temp_dir=ray_dir, include_dashboard=False)
    try:
        n = bulk_attribute(args.source, args.out, args.model, args.registry, args.tenant, args.batch, args.actors,
                           reader=args.reader)
    except GenprintError as exc:
        print(f"bulk_attribute: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if started:
            import shutil

            ray.shutdown()
            shutil.rmtree(ray_dir, ignore_errors=True)
    print(f"attributed {n} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
