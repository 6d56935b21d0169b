"""White-box verification: the fingerprint comes back from a leaked decoder's weights, for every family."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_modulation_export import TINY_KL, TINY_TINY, diffusers_model, taef2_model

from genprint.errors import GenprintError
from genprint.fingerprint import from_hex, random_fingerprints
from genprint.weights import noise, noisy_parameters, read_decoder, recover_logits, untouched_share

FAMILIES = [("taef2", None), ("diffusers-kl", TINY_KL), ("diffusers-tiny", TINY_TINY)]


def model_of(family, config):
    return taef2_model() if family == "taef2" else diffusers_model(family, config)


@pytest.mark.parametrize("family,config", FAMILIES, ids=[f for f, _ in FAMILIES])
def test_the_code_comes_back_from_the_weights_under_noise(tmp_path, family, config):
    model = model_of(family, config)
    bits = random_fingerprints(1, model.nbits, rng=np.random.default_rng(5))[0]
    exported = model.adapter.export_native(model.bake(bits), tmp_path / "clean")
    state = read_decoder(model, exported)
    assert np.array_equal(recover_logits(model, state) > 0, bits.astype(bool))
    assert untouched_share(model, state) > 0.999999
    noisy = noise(state, 0.01)  # 1 % of each tensor's std, as a leaker covering tracks might add
    assert np.array_equal(recover_logits(model, noisy) > 0, bits.astype(bool))
    assert untouched_share(model, noisy) < untouched_share(model, state)


def test_purification_fits_the_leaked_decoder_to_photos_and_finetuning_to_the_original(tmp_path):
    from genprint.data import resolve_photos
    from genprint.weights import finetune, finetuning_bank

    model = taef2_model()
    state = noise(model.bake(np.ones(48, np.uint8)).state_dict(), 0.3)  # a leaked decoder some way off the original
    photos = resolve_photos(None)[:4]
    test = finetuning_bank(model, photos, crop=64, seed=1, target="photos").windows.sample(4)  # other windows

    def error(weights, target):
        decoder = model.adapter.copy_decoder()
        decoder.load_state_dict(weights)
        with torch.no_grad():
            z = model.encode(test)
            return (model.adapter.decode(z, decoder=decoder) - target(z)).pow(2).mean().item()

    to_photos = lambda z: test  # noqa: E731
    purified = finetune(model, state, finetuning_bank(model, photos, crop=64, target="photos"), steps=5, lr=1e-4)
    assert error(purified, to_photos) < 0.9 * error(state, to_photos)
    tuned = finetune(model, state, finetuning_bank(model, photos, crop=64), steps=5, lr=1e-5)  # near its target
    assert error(tuned, model.decode_reference) < 0.9 * error(state, model.decode_reference)
    with pytest.raises(GenprintError, match="fine-tuning target must be one of"):
        finetuning_bank(model, photos, target="teacher")
    with pytest.raises(GenprintError, match="multiple of the decoder's downscale"):
        finetuning_bank(model, photos, crop=100, target="photos")


def test_weights_of_another_architecture_are_refused(tmp_path):
    model = taef2_model()
    other = diffusers_model("diffusers-tiny", TINY_TINY)
    folder = other.adapter.export_native(other.bake(np.zeros(other.nbits, np.uint8)), tmp_path / "tiny")
    with pytest.raises(GenprintError, match="not a taef2 decoder of this bundle's architecture"):
        read_decoder(model, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(GenprintError, match="holds no TAEF2 decoder weights"):
        read_decoder(model, folder / "config.json")
    path = model.adapter.export_native(model.bake(np.zeros(48, np.uint8)), tmp_path / "taef2")
    state = load_file(path)
    state["3.conv.0.weight"] = state["3.conv.0.weight"][:, :32].contiguous()  # another width
    save_file(state, tmp_path / "narrow.safetensors")
    with pytest.raises(GenprintError, match="shapes differ"):
        read_decoder(model, tmp_path / "narrow.safetensors")


def test_verify_weights_names_the_user_and_two_colluders(tmp_path, capsys, monkeypatch):
    import json

    from genprint.bundle import read_config, save_bundle
    from genprint.cli import main
    from genprint.registry import Registry

    model = taef2_model()
    bundle = save_bundle(model, tmp_path / "bundle")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    registry = Registry(db)
    tenant, _ = registry.create_tenant("acme")
    codes = dict(registry.register_users(tenant, read_config(bundle)["model_id"], 48, names=["ann", "ben", "cy"]))

    def export(user):
        return model.adapter.export_native(model.bake(from_hex(codes[user])), tmp_path / user)

    monkeypatch.delenv("GENPRINT_DB", raising=False)
    assert main(["verify-weights", str(export("ben")), "--model", str(bundle), "--db", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fingerprint"] == codes["ben"] and report["user"]["user"] == "ben" and report["colluder"] is None
    a, b = (load_file(export(u)) for u in ("ann", "cy"))
    save_file({k: (a[k] + b[k]) / 2 for k in a}, tmp_path / "averaged.safetensors")
    assert (
        main(["verify-weights", str(tmp_path / "averaged.safetensors"), "--model", str(bundle), "--db", db, "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert {report["user"]["user"], report["colluder"]["user"]} == {"ann", "cy"}


@pytest.mark.parametrize(
    "kind,strength", [("noise", 0.01), ("int8", 0), ("prune", 0.2), ("finetune", 2), ("purify", 2)]
)
def test_attack_weights_writes_the_export_format_and_verify_still_reads_it(
    tmp_path, capsys, monkeypatch, kind, strength
):
    import json

    from genprint.bundle import save_bundle
    from genprint.cli import main

    model = taef2_model()
    bundle = save_bundle(model, tmp_path / "bundle")
    bits = random_fingerprints(1, 48, rng=np.random.default_rng(9))[0]
    leaked = model.adapter.export_native(model.bake(bits), tmp_path / "leaked")
    monkeypatch.delenv("GENPRINT_DB", raising=False)
    assert (
        main(
            [
                "attack-weights",
                str(leaked),
                "--model",
                str(bundle),
                "--kind",
                kind,
                "--strength",
                str(strength),
                "--out",
                str(tmp_path / "attacked"),
            ]
        )
        == 0
    )
    attacked = tmp_path / "attacked" / "taef2_decoder.safetensors"
    assert set(load_file(attacked)) == set(load_file(leaked))
    capsys.readouterr()
    assert (
        main(
            [
                "verify-weights",
                str(attacked),
                "--model",
                str(bundle),
                "--db",
                f"sqlite:///{tmp_path / 'r.db'}",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["weights_explained"] < 1
    if kind != "prune":  # light attacks leave the code readable from the weights
        assert report["fingerprint"] == "".join(f"{b:02x}" for b in np.packbits(bits))


def test_averaged_decoders_name_both_colluders_and_a_single_export_names_no_colluder(tmp_path):
    """Over 8 pairs of random codes, some agreeing on too few bits for the blurred code to name either alone: each is
    named from the scales the other leaves."""
    from genprint.fingerprint import from_hex
    from genprint.registry import Registry
    from genprint.weights import attribute_leak, recover_scales

    model = taef2_model()
    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    tenant, _ = registry.create_tenant("acme")
    codes = dict(registry.register_users(tenant, "m", 48, count=40))
    users = sorted(codes)
    states = {u: model.bake(from_hex(codes[u])).state_dict() for u in users[:16]}
    for a, b in zip(users[:16:2], users[1:16:2]):
        averaged = {k: (states[a][k] + states[b][k]) / 2 for k in states[a]}
        first, colluder = attribute_leak(registry, model, "m", recover_scales(model, averaged))
        assert first.attributed and colluder is not None and {first.user, colluder.user} == {a, b}
    first, colluder = attribute_leak(registry, model, "m", recover_scales(model, states[users[0]]))
    assert first.attributed and first.user == users[0] and colluder is None
    unregistered = model.bake(np.random.default_rng(0).integers(0, 2, 48)).state_dict()
    first, colluder = attribute_leak(registry, model, "m", recover_scales(model, unregistered))
    assert not first.attributed and colluder is None


def test_training_noise_is_the_attacks_noise_and_leaves_no_trace():
    conv = torch.nn.Conv2d(16, 32, 3)
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    with noisy_parameters(conv, 0.1, seed=0):
        inside = {k: v.clone() for k, v in conv.state_dict().items()}
    attacked = noise(before, 0.1, seed=0)  # the same draws in the same order
    for k in before:
        assert torch.allclose(inside[k], attacked[k])
        assert abs(float((inside[k] - before[k]).std() / before[k].std()) - 0.1) < 0.02
        assert torch.equal(conv.state_dict()[k], before[k])  # restored exactly
