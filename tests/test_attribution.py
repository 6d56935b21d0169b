"""ONNX export + ONNX Runtime extractor, and the `genprint tenants|users|attribute` commands end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genprint.cli import main
from genprint.errors import GenprintError
from genprint.extractor import Extractor
from genprint.fingerprint import from_hex, hamming, pack
from genprint.readers import ExtractorRuntime, export_extractor, provider_list
from genprint.readers.tensorrt_engine import build_engine, tensorrt_available
from genprint.registry import Registry


@pytest.fixture(
    scope="module",
    params=[{}, {"highpass": True}, {"highpass": True, "margin": 16}],
    ids=["plain", "highpass", "margin"],
)
def extractor_onnx(tmp_path_factory, request):
    torch.manual_seed(0)
    model = Extractor(48, width=32, depth=6, **request.param)
    for m in model.modules():  # non-trivial batch-norm statistics, so folding them is actually checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    return model, export_extractor(model, tmp_path_factory.mktemp("onnx") / "extractor.onnx")


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (4, 3, 96, 160), (2, 3, 257, 131)])
def test_onnx_matches_pytorch(extractor_onnx, shape):
    model, path = extractor_onnx
    runtime = ExtractorRuntime(path)
    assert runtime.providers == ["CPUExecutionProvider"] and runtime.nbits == 48
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images).numpy()
    got = runtime.logits(images)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(runtime.bits(images), (expected > 0).astype(np.uint8))


def test_runtime_rejects_bad_input(extractor_onnx, tmp_path):
    runtime = ExtractorRuntime(extractor_onnx[1])
    with pytest.raises(GenprintError, match="at least 64 px"):
        runtime.logits(np.zeros((1, 3, 32, 128), np.float32))
    with pytest.raises(GenprintError, match=r"shape \(batch, 3, H, W\)"):
        runtime.logits(np.zeros((1, 4, 64, 64), np.float32))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(GenprintError, match="cannot load ONNX extractor"):
        ExtractorRuntime(bad)


def test_provider_preference(tmp_path):
    assert provider_list(["CPUExecutionProvider", "AzureExecutionProvider"]) == ["CPUExecutionProvider"]
    providers = provider_list(
        ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"], tmp_path / "trt"
    )
    assert [p if isinstance(p, str) else p[0] for p in providers] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    trt = providers[0][1]
    assert (
        trt["trt_fp16_enable"]
        and trt["trt_engine_cache_enable"]
        and trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    )
    assert (
        trt["trt_profile_min_shapes"] == "images:1x3x64x64" and trt["trt_profile_max_shapes"] == "images:64x3x2048x2048"
    )
    assert (tmp_path / "trt").is_dir()


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed: the refusal path does not apply")
def test_tensorrt_builder_refuses_without_tensorrt(extractor_onnx, tmp_path):
    with pytest.raises(GenprintError, match="TensorRT is not installed"):
        build_engine(extractor_onnx[1], tmp_path / "x.engine")


# --- CLI, end to end on a real (untrained) bundle ---------------------------------------------------------------------


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_env(tmp_path, monkeypatch, untrained_bundle_dir):
    monkeypatch.setenv("GENPRINT_DB", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("GENPRINT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GENPRINT_API_KEY", raising=False)
    return untrained_bundle_dir


def test_cli_tenants_users_attribute(cli_env, tmp_path, capsys, monkeypatch):
    bundle = str(cli_env)
    code, out, _ = cli(capsys, "tenants", "create", "acme", "--json")
    assert code == 0
    key = json.loads(out)["api_key"]
    code, out, _ = cli(capsys, "tenants", "create", "globex", "--json")
    other_key = json.loads(out)["api_key"]
    code, _, err = cli(capsys, "tenants", "create", "acme")
    assert code == 2 and "already exists" in err

    code, out, err = cli(capsys, "users", "register", "alice", "bob", "--model", bundle, "--api-key", key, "--json")
    assert code == 0, err
    issued = [json.loads(line) for line in out.splitlines()]
    assert [u["user"] for u in issued] == ["alice", "bob"] and all(len(u["fingerprint"]) == 12 for u in issued)
    monkeypatch.setenv("GENPRINT_API_KEY", key)
    code, out, _ = cli(capsys, "users", "register", "--count", "5", "--model", bundle, "--request-id", "r1")
    assert code == 0 and len(out.splitlines()) == 5
    code, out2, err = cli(capsys, "users", "register", "--count", "5", "--model", bundle, "--request-id", "r1")
    assert out2 == out and "replayed" in err

    registry = Registry()
    before = registry.counts()
    refusals = [
        (["users", "register", "carol", "--model", bundle, "--api-key", "gpk_wrong"], "invalid API key"),
        (["users", "register", "alice", "--model", bundle], "already have a fingerprint"),
        (["users", "revoke", "alice", "--api-key", other_key], "has no user 'alice'"),
        (["users", "list", "--tenant", "acme", "--api-key", other_key], "another tenant"),
        (["users", "register", "--model", bundle], "give user names or --count"),
        (["users", "register", "x", "--model", str(tmp_path)], "not a genprint bundle"),
    ]
    for argv, message in refusals:
        code, _, err = cli(capsys, *argv)
        assert code == 2 and message in err, (argv, err)
    monkeypatch.delenv("GENPRINT_API_KEY")
    code, _, err = cli(capsys, "users", "list")
    assert code == 2 and "API key is required" in err
    assert registry.counts() == before

    code, out, _ = cli(capsys, "users", "revoke", "bob", "--api-key", key, "--reason", "test")
    assert code == 0
    code, out, _ = cli(capsys, "users", "list", "--model", bundle, "--api-key", key, "--json")
    listed = {u["user"]: u for u in map(json.loads, out.splitlines())}
    assert len(listed) == 7 and listed["bob"]["revoked"] and listed["alice"]["fingerprint"] == issued[0]["fingerprint"]
    code, out, _ = cli(capsys, "tenants", "list", "--json")
    assert [(t["tenant"], t["users"]) for t in map(json.loads, out.splitlines())] == [("acme", 7), ("globex", 0)]

    rng = np.random.default_rng(0)
    good = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:200])
    code, out, _ = cli(capsys, "attribute", "--model", bundle, "--json", str(good), str(corrupt))
    assert code == 2  # one image failed; the other was still answered
    first, second = map(json.loads, out.splitlines())
    assert {"path", "attributed", "tenant", "user", "fingerprint", "distance", "p_value"} <= set(first)
    assert first["path"] == str(good) and second["path"] == str(corrupt) and "corrupt or truncated" in second["error"]
    # the answer is consistent with a PyTorch extraction and the registry's codes
    from genprint import evidence
    from genprint.bundle import load_bundle
    from genprint.imageio import load_image

    with torch.no_grad():
        logits = load_bundle(bundle).extract(load_image(good)[None]).numpy()[0]
    bits = (logits > 0).astype(np.uint8)
    codes = [u["fingerprint"] for u in listed.values()]
    words = pack(np.stack([from_hex(c) for c in codes]))
    best = int(evidence.scores(words, logits).argmax())  # soft matching: the code the read's logits support most
    assert first["extracted"] == "".join(f"{b:02x}" for b in np.packbits(bits))
    assert first["fingerprint"] == codes[best] and first["rule"] == "soft"
    assert first["distance"] == hamming(pack(bits)[None], words[best][None])[0, 0]
    assert first["attributed"] == (first["p_value"] <= 1e-6)

    code, out, _ = cli(capsys, "attribute", "--model", bundle, "--api-key", other_key, str(good))
    assert code == 0 and "not attributed" in out  # globex has no users: nothing to match
    events = registry.audit_log(action="attribute")
    assert len(events) == 2 and events[-1]["detail"]["label"] == str(good)

    # The inversion reader answers through the same registry; this bundle's identity mapping leaves its code at 0.
    code, out, _ = cli(
        capsys, "attribute", "--model", bundle, "--json", "--reader", "inversion", "--inversion-steps", "1", str(good)
    )
    answer = json.loads(out)
    assert code == 0 and answer["extracted"] == "00" * 6 and answer["fingerprint"] in codes


def test_the_cascade_reads_again_only_what_the_cnn_leaves_uncertain(tmp_path, readable_bundle):
    """The bundle's CNN is untrained, so its reads decide nothing; the inversion reader, escalated to, reads the code.
    escalate_p sets what counts as uncertain: 0 escalates nothing, 1 everything not attributed."""
    from genprint.attribution import make_attributor
    from genprint.bundle import read_config

    bundle, render = readable_bundle
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    tenant, _ = registry.create_tenant("acme")
    codes = dict(registry.register_users(tenant, read_config(bundle)["model_id"], 48, names=["alice", "bob"]))
    images = [render(codes["bob"]), render(None)]
    never = make_attributor(bundle, "cascade", registry, inversion_steps=60, max_rotation=0, escalate_p=0.0)
    assert [a.attributed for a in never.attribute(images)] == [False, False] and never.escalated == 0
    always = make_attributor(bundle, "cascade", registry, inversion_steps=60, max_rotation=0, escalate_p=1.0)
    marked, unmarked = always.attribute(images)
    assert always.escalated == 2 and marked.attributed and marked.user == "bob" and not unmarked.attributed
    assert always.info()["runtime"][-1].startswith("inversion")
