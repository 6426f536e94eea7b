"""The prompt-reading probe (engine/probe.py): a text-blind denoiser scores exactly 1.00, swaps change
exactly one attribute, a text-reading model moves the ratios, and damaged weights are one line, exit 2."""
import zlib

import numpy as np
import pytest
import torch

from engine import probe
from engine.backends.toy import world
from engine.backends.toy.backend import load_vae, toy_spec
from engine.backends.toy.model import DiT, DiTConfig
from engine.cli import main

TEXT_DIM = 16


def fake_text(captions):
    """Each word -> a fixed random vector (crc32-seeded): tokens (L, 16), cheap and deterministic."""
    out = []
    for c in captions:
        toks = torch.stack([torch.from_numpy(np.random.default_rng(zlib.crc32(w.encode())).normal(size=TEXT_DIM))
                            .float() for w in c.split()])
        out.append((toks, torch.ones(len(toks), dtype=torch.bool)))
    return out


@pytest.fixture(scope="module")
def clips():
    vae = load_vae()
    with torch.no_grad():
        return probe.make_clips(vae.encode, toy_spec(), n=3)


def test_swaps_change_exactly_the_named_attribute():
    for scene in probe.probe_scenes(6):
        true = world.parse_caption(world.caption(scene))
        for attr in probe.ATTRIBUTES:
            other = probe.swap(scene, attr)
            assert world.caption(other) != world.caption(scene), attr
            q = world.parse_caption(world.caption(other))
            if attr == "background":
                assert q.background != true.background and q.objects == true.objects
            elif attr == "count":
                assert len(q.objects) != len(true.objects) and q.objects[0] == true.objects[0]
            else:
                field = {"colour": "color", "direction": "motion"}.get(attr, attr)
                a, b = true.objects[0], q.objects[0]
                changed = [f for f in ("color", "shape", "motion", "size") if getattr(a, f) != getattr(b, f)]
                assert changed == [field], (attr, changed)
                assert q.background == true.background
            if attr == "direction":   # the opposite way, not merely another
                assert world.DIRECTIONS[q.objects[0].motion] == tuple(-v for v in world.DIRECTIONS[true.objects[0].motion])


def test_a_denoiser_that_ignores_its_text_scores_one_on_every_row(clips):
    def blind(x, t, text, gate):                                            # reads the noisy clip, not the words
        return 0.7 * x - 0.2 * x.roll(1, dims=2) + t[:, None, :, None, None]
    ratios = probe.run_probe(blind, fake_text, clips)
    assert set(ratios) == {(m, a) for m in probe.MODES for a in probe.ATTRIBUTES}
    for row in ratios.values():
        assert list(row) == list(probe.LEVELS)
        assert all(v == pytest.approx(1.0, abs=1e-6) for v in row.values())
    assert "1.000" in probe.table(ratios) and "0.9" in probe.table(ratios)


def test_a_denoiser_that_reads_text_moves_every_row_and_the_probe_is_repeatable(clips):
    def reader(x, t, text, gate):                                           # the caption's mean word, everywhere
        words = (gate @ text) / gate.sum(-1, keepdim=True)                  # (K, F, 16)
        return x + words.permute(0, 2, 1)[..., None, None]
    a = probe.run_probe(reader, fake_text, clips, levels=(0.9,))
    assert a == probe.run_probe(reader, fake_text, clips, levels=(0.9,))
    assert all(abs(r[0.9] - 1) > 1e-3 and np.isfinite(r[0.9]) for r in a.values())


def test_a_small_dit_runs_through_the_probe():
    """The real model's signature, with a pooled-text path (the ablation): finite ratios for every row."""
    torch.manual_seed(0)
    model = DiT(DiTConfig(in_channels=16, patch=2, width=32, depth=1, heads=2, text_dim=TEXT_DIM, pooled_text=True))
    z = torch.randn(16, 5, 8, 8)
    clip = probe.ProbeClip(z, (torch.rand(8, 8) > 0.7).float(), ["a red circle moving left"] * 7)
    with torch.no_grad():
        r = probe.run_probe(model.eval(), fake_text, [clip], levels=(0.7,))
    assert all(row[0.7] == pytest.approx(1.0) for row in r.values())      # identical captions: nothing to read


def test_image_to_video_mode_scores_only_the_generated_frames(clips):
    """A denoiser that is wrong only on the first latent frame, and only for the true caption, loses in t2v
    mode but cannot be told apart in i2v mode, where that frame is given clean and carries no loss."""
    true_tokens = fake_text([clips[0].captions[0]])[0][0]

    def odd(x, t, text, gate):
        v = torch.zeros_like(x)
        is_true = torch.tensor([tx[:len(true_tokens)].shape == true_tokens.shape and
                                torch.equal(tx[:len(true_tokens)], true_tokens) for tx in text])
        v[is_true, :, 0] = 5.0
        return v
    r = probe.run_probe(odd, fake_text, clips[:1], levels=(0.9,))
    assert r["t2v", "colour"][0.9] < 0.99
    assert r["i2v", "colour"][0.9] == pytest.approx(1.0, abs=1e-6)


def test_probe_verb_on_damaged_weights_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "dit.safetensors"
    bad.write_bytes(b"\x00not a safetensors file" * 10)
    assert main(["probe", "--weights", str(bad), "--clips", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "weights" in err and str(bad) in err
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"garbage")
    assert main(["probe", "--weights", str(ckpt), "--clips", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "weights" in err
    assert main(["probe", "--clips", "0"]) == 2
    assert "clips" in capsys.readouterr().err


def test_the_shipped_probe_reads_every_shipped_model(capsys):
    """`cinepatch probe` on the shipped weights probes the DiT (since session 25 the image-to-video model itself) and
    each model shipped beside it (an image-to-video LoRA, the keyframe model); each reads direction differently."""
    from engine.backends.toy.backend import ASSETS, I2V_NAME, KEY_NAME
    from engine.cli import main
    assert main(["probe", "--clips", "2"]) == 0
    out = capsys.readouterr().out
    beside = [(ASSETS / name).exists() for name in (I2V_NAME, KEY_NAME)]
    assert ("probe of the image-to-video model" in out) == beside[0]
    assert ("probe of the keyframe model" in out) == beside[1] and any(beside)
    rows = [tuple(line.split()[2:]) for line in out.splitlines() if line.split()[:2] == ["i2v", "direction"]]
    n = 1 + sum(beside)
    assert len(rows) == n and len(set(rows)) == n                # one table each, different models
