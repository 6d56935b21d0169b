"""Artifact stores against a real directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import pytest

from genprint.bundle import load_bundle
from genprint.errors import GenprintError
from genprint.storage import LocalStore, S3Store, fetch_bundle, open_store, sha256_file
from pipelines.tracking import resolve_model


def _roundtrip(store, bundle_dir, tmp_path):
    keys = store.put_dir(bundle_dir, "runs/r1/bundle")
    assert sorted(keys) == sorted(f"runs/r1/bundle/{p.name}" for p in bundle_dir.iterdir())
    assert store.list("runs/r1/bundle") == sorted(keys)  # checksum sidecars are not listed
    assert store.exists("runs/r1/bundle/decoder.safetensors") and store.exists("runs/r1")
    assert not store.exists("runs/r2")
    out = store.get_dir("runs/r1/bundle", tmp_path / "out")
    for path in bundle_dir.iterdir():
        assert sha256_file(out / path.name) == sha256_file(path)
    assert load_bundle(out).bundle_config["model_id"] == load_bundle(bundle_dir).bundle_config["model_id"]


def test_local_store_roundtrip(untrained_bundle_dir, tmp_path):
    store = open_store(f"file://{tmp_path / 'store'}")
    assert isinstance(store, LocalStore)
    _roundtrip(store, untrained_bundle_dir, tmp_path)


def test_local_store_refuses_a_corrupted_file_and_keeps_the_target(untrained_bundle_dir, tmp_path):
    store = open_store(tmp_path / "store")
    store.put_file(untrained_bundle_dir / "mapping.safetensors", "m/mapping.safetensors")
    stored = tmp_path / "store" / "m" / "mapping.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    target = tmp_path / "mine.safetensors"
    target.write_bytes(b"previous content")
    with pytest.raises(GenprintError, match="corrupted"):
        store.get_file("m/mapping.safetensors", target)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


def test_local_store_errors(tmp_path):
    store = open_store(tmp_path / "store")
    with pytest.raises(GenprintError, match="does not exist"):
        store.get_file("nothing.safetensors", tmp_path / "x")
    with pytest.raises(GenprintError, match="escapes"):
        store.put_file(__file__, "../outside.py")
    with pytest.raises(GenprintError, match="holds no files"):
        store.get_dir("empty", tmp_path / "y")
    with pytest.raises(GenprintError, match="unsupported store URL"):
        open_store("ftp://host/x")
    with pytest.raises(GenprintError, match="names no bucket"):
        open_store("s3:///prefix")


def test_s3_store_roundtrip(s3_bucket, untrained_bundle_dir, tmp_path):
    store = open_store(f"s3://{s3_bucket}/team/models")
    assert isinstance(store, S3Store)
    _roundtrip(store, untrained_bundle_dir, tmp_path)


def test_s3_corrupted_object_is_refused(s3_bucket, s3_server, untrained_bundle_dir, tmp_path):
    store = open_store(f"s3://{s3_bucket}")
    store.put_dir(untrained_bundle_dir, "b")
    good = (untrained_bundle_dir / "extractor.safetensors").read_bytes()
    s3_server.client().put_object(Bucket=s3_bucket, Key="b/extractor.safetensors", Body=good[:-10] + b"0123456789")
    with pytest.raises(GenprintError, match=r"s3://.*/b/extractor.safetensors is corrupted"):
        store.get_dir("b", tmp_path / "out")
    assert not (tmp_path / "out" / "extractor.safetensors").exists()


def test_s3_object_without_checksum_is_refused(s3_bucket, s3_server, tmp_path):
    s3_server.client().put_object(Bucket=s3_bucket, Key="foreign.safetensors", Body=b"x")
    with pytest.raises(GenprintError, match="no recorded checksum"):
        open_store(f"s3://{s3_bucket}").get_file("foreign.safetensors", tmp_path / "f")


def test_s3_wrong_credentials(s3_bucket, monkeypatch, untrained_bundle_dir, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_store(f"s3://{s3_bucket}/p")
    with pytest.raises(GenprintError, match="refused the credentials"):
        store.put_file(untrained_bundle_dir / "config.json", "config.json")
    with pytest.raises(GenprintError, match="refused the credentials"):
        store.list()
    with pytest.raises(GenprintError, match="refused the credentials"):
        store.get_file("config.json", tmp_path / "c")


def test_s3_missing_bucket_and_key(s3_bucket, untrained_bundle_dir, tmp_path):
    missing = open_store("s3://genprint-no-such-bucket/p")
    with pytest.raises(GenprintError, match="bucket 'genprint-no-such-bucket' does not exist"):
        missing.get_file("config.json", tmp_path / "c")
    with pytest.raises(GenprintError, match="bucket 'genprint-no-such-bucket' does not exist"):
        missing.list()
    with pytest.raises(GenprintError, match="does not exist"):
        open_store(f"s3://{s3_bucket}").get_file("nope.safetensors", tmp_path / "n")


def test_s3_unreachable_endpoint(s3_bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(GenprintError, match="cannot reach the S3 endpoint"):
        open_store(f"s3://{s3_bucket}").list()


def test_fetch_bundle_from_s3_caches_and_drops_stale_files(s3_bucket, untrained_bundle_dir, tmp_path):
    url = f"s3://{s3_bucket}/bundles/b1"
    store = open_store(url)
    store.put_dir(untrained_bundle_dir)
    local = resolve_model(url, cache_dir=tmp_path / "cache")
    assert load_bundle(local).nbits == 48
    (local / "leftover.safetensors").write_bytes(b"stale")
    again = fetch_bundle(url, cache_dir=tmp_path / "cache")
    assert again == local and not (local / "leftover.safetensors").exists()
    assert resolve_model(untrained_bundle_dir) == untrained_bundle_dir
    with pytest.raises(GenprintError, match="no bundle directory"):
        fetch_bundle(tmp_path / "absent")
