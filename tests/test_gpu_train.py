"""bench/gpu_train.py: the pack a lent GPU continues the embedded model's training run from."""
import os

import pytest


def test_gpu_train_pack_fits_the_device_and_its_encoder_matches_minilm(tmp_path, monkeypatch):
    """The carried pack (bench/gpu_train.py) rebuilds an encoder that gives MiniLM's embeddings for
    the world's captions (fp16 layers), refuses other words, and trains and exports on the CPU."""
    import dataclasses
    import subprocess
    from pathlib import Path

    import numpy as np

    from bench import gpu_train
    from engine.backends.toy import backend
    from engine.backends.toy.train import Run
    from engine.backends.toy.world import caption, sample_scene
    dit = backend.load_dit(backend.ASSETS / "toy_dit.safetensors")
    Run(str(tmp_path / "run"), 1).keep(dit.state_dict(), dataclasses.asdict(dit.cfg))
    # the shipped DiT (the image-to-video model since session 25) reads a grounded layout: so does the run
    carry = gpu_train.pack(tmp_path / "run", None, ["--batch", "2", "--fresh", "1", "--probe-every", "0", "--grounded"],
                           tmp_path / "carry")
    packed = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    tracked = sum(Path(f).stat().st_size for f in subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split() if Path(f).is_file())
    assert packed + tracked < 60 * 2**20, (packed, tracked)           # the device takes 64 MiB in all

    ref = backend.MiniLM()
    monkeypatch.setenv("CINEPATCH_TEXT_ENCODER", str(gpu_train.rebuild_encoder(carry, tmp_path / "enc")))
    slim = backend.MiniLM()
    rng = np.random.default_rng(5)
    prompts = [caption(sample_scene(rng), rng) for _ in range(12)] + [""]
    for (a, _), (b, _) in zip(ref.encode(prompts), slim.encode(prompts)):
        assert a.shape == b.shape and (a - b).abs().max() < 2e-2
    monkeypatch.setattr(backend.MiniLM, "encode", backend.MiniLM.encode)   # guard_text wraps it: undone after
    gpu_train.guard_text(backend.MiniLM)
    with pytest.raises(SystemExit, match="pack left out"):
        slim.encode(["a zebra juggling quantum pancakes"])
    out = gpu_train.train(carry, tmp_path / "out", 0, "cpu", max_steps=2, scratch=tmp_path)
    assert backend.load_dit(out).cfg == dit.cfg and (tmp_path / "out" / "log.txt").exists()


def test_gpu_train_packs_the_shipped_weights_on_a_fresh_machine(tmp_path):
    """A machine without a run packs assets/toy_dit.safetensors (--weights), read in the carried tree in place; the
    lent GPU's run starts from exactly those weights (a safetensors file is not read as a torch checkpoint)."""
    import json

    import torch

    from bench import gpu_train
    from engine.backends.toy import backend
    from engine.probe import load_weights
    shipped = backend.ASSETS / "toy_dit.safetensors"
    with pytest.raises(SystemExit, match="pass --weights"):
        gpu_train.pack(tmp_path / "no_run", None, [], tmp_path / "carry")
    carry = gpu_train.pack(tmp_path / "no_run", shipped, [], tmp_path / "carry")
    init = gpu_train.init_path(carry, json.loads((carry / "flags.json").read_text())["init"])
    want = backend.load_dit(shipped).state_dict()
    got = load_weights(init).state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], v) for k, v in want.items())


def test_gpu_train_recipe_packs_from_scratch_and_trains_the_keyframe_model(tmp_path, monkeypatch):
    """A fresh machine packs no weights (--scratch); the lent GPU's key1x1 recipe then trains a keyframe model
    of 1x1 latent patches from scratch (model card, session 21), here 2 steps on the CPU."""
    import json

    from bench import gpu_train
    from engine.backends.toy import backend
    with pytest.raises(SystemExit, match="--scratch"):
        gpu_train.pack(tmp_path / "no_run", None, [], tmp_path / "carry")
    recipe, _, ship = gpu_train.RECIPES["key1x1"]
    carry = gpu_train.pack(tmp_path / "no_run", None, recipe, tmp_path / "carry", scratch=True, ship=ship)
    packed = json.loads((carry / "flags.json").read_text())
    assert packed["init"] is None and not list(carry.glob("init.*"))
    flags = [f for f in recipe] + ["--fresh", "1"]
    flags[flags.index("--batch") + 1] = "2"   # the recipe's GPU batch, made CPU-sized for a test
    packed["flags"] = flags
    (carry / "flags.json").write_text(json.dumps(packed))
    # train() points the process at the slim encoder and guards MiniLM.encode, and undoes both when it returns:
    # left set, every later test would encode its prompts with NaN rows for words outside the world
    monkeypatch.setenv("CINEPATCH_TEXT_ENCODER", str(tmp_path / "own"))
    encode = backend.MiniLM.encode
    out = gpu_train.train(carry, tmp_path / "out", 0, "cpu", max_steps=2, scratch=tmp_path)
    assert os.environ["CINEPATCH_TEXT_ENCODER"] == str(tmp_path / "own") and backend.MiniLM.encode is encode
    model = backend.load_dit(out)
    from engine.backends.toy.layout import GROUNDED
    assert model.cfg.patch == 1 and model.cfg.layout == GROUNDED
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "keyframe share 1.0" in log and "initialised from" not in log


def test_gpu_train_default_recipe_goes_on_with_the_shipped_image_to_video_model_and_sends_back_its_asset(tmp_path):
    """The default recipe packs no weights (the shipped image-to-video LoRA travels with the tracked tree and is read
    there in place), trains a LoRA on it (here 2 CPU-sized steps) and sends back a file stored as assets/ store it:
    a LoRA of the shipped DiT that loads into the backend's image-to-video model, near the shipped one."""
    import json

    import torch

    from bench import gpu_train
    from engine.backends.toy import backend
    from engine.backends.toy.adapter import load_adapter
    flags, tracked, ship = gpu_train.RECIPES[gpu_train.RECIPE]
    assert tracked == "assets/toy_dit.safetensors" and ship == "i2v" and "--grounded" in flags   # the i2v model
    carry = gpu_train.pack(None, None, flags, tmp_path / "carry", ship=ship, tracked=tracked)
    packed = json.loads((carry / "flags.json").read_text())
    assert packed["init"] == tracked and not list(carry.glob("init.*"))
    small = list(flags) + ["--fresh", "1"]
    small[small.index("--batch") + 1] = "2"
    small.remove("--bf16")                                                   # CPU autocast is slow, not wrong
    (carry / "flags.json").write_text(json.dumps({**packed, "flags": small}))
    out = gpu_train.train(carry, tmp_path / "out", 0, "cpu", max_steps=2, scratch=tmp_path)
    assert out.name == backend.I2V_NAME
    dit = backend.load_dit(backend.ASSETS / "toy_dit.safetensors")
    sent, shipped = load_adapter(dit, out), dit                              # a LoRA of the shipped model, near it
    assert sent.cfg == shipped.cfg
    gap = max(float((sent.state_dict()[k] - v).abs().max()) for k, v in shipped.state_dict().items())
    assert 0 < gap < 0.05, gap                                               # two steps on from the shipped model
    log = (tmp_path / "out" / "log.txt").read_text()
    assert f"initialised from {gpu_train.REPO / tracked}" in log and "layout 11 channels" in log
