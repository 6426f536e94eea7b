"""LoRA presets (issue 22): a preset names LoRA files with scales; the backend loads them with diffusers'
load_lora_weights / set_adapters for the job and unloads them after. LoRAs are made here, for the tiny Wan
models of tests/test_wan.py and tests/test_wan22.py, and saved with diffusers' own save_lora_weights.
"""
import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from engine import ops, presets  # noqa: E402
from engine.api import Settings, generate  # noqa: E402
from engine.params import InputError  # noqa: E402
from tests.test_wan import SIZE, tiny_pipe  # noqa: E402

MODULES = ("blocks.0.attn1.to_q", "blocks.0.attn2.to_k", "blocks.1.ffn.net.0.proj", "blocks.1.attn1.to_out.0")


@pytest.fixture(scope="module")
def wan():
    from engine.backends.wan import WanBackend
    return WanBackend.from_pipe(tiny_pipe())


def make_lora(model, path, modules=MODULES, rank: int = 4, seed: int = 0, sizes=None):
    """A LoRA file for `model` (random A and B, big enough to change frames) -> its path. sizes: (in, out) to
    force other shapes (a LoRA made for another model)."""
    from diffusers import WanPipeline
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for name in modules:
        mod = model.get_submodule(name)
        fan_in, fan_out = sizes or (mod.in_features, mod.out_features)
        layers[f"{name}.lora_A.weight"] = torch.randn(rank, fan_in, generator=g) * 0.5
        layers[f"{name}.lora_B.weight"] = torch.randn(fan_out, rank, generator=g) * 0.5
    WanPipeline.save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name)
    return path


@pytest.fixture
def preset_dir(tmp_path, monkeypatch):
    """presets/ is this test's folder: the shipped presets plus those a test writes."""
    import shutil
    for f in presets.PRESETS_DIR.glob("*.toml"):
        shutil.copy(f, tmp_path)
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    return tmp_path


def frames(backend, preset=None):
    tl = ops.t2v("a red ball rolls", duration_s=1.0, seed=3, preset=preset, **SIZE)
    return generate(tl, backend, Settings(steps=2, guidance=2.0))[0]


def test_lora_preset_changes_frames_and_unloading_restores_them_bit_for_bit(wan, preset_dir):
    make_lora(wan.transformer, preset_dir / "loras" / "ink.safetensors")
    (preset_dir / "ink.toml").write_text('name = "ink"\n[[lora]]\nfile = "loras/ink.safetensors"\nscale = 0.8\n')
    p = presets.load("ink")
    assert p.loras == (presets.Lora(preset_dir / "loras" / "ink.safetensors", 0.8, "transformer"),)
    before_weights = {k: v.clone() for k, v in wan.transformer.state_dict().items()}
    base = frames(wan)
    styled = frames(wan, "ink")
    assert styled.shape == base.shape and not np.array_equal(styled, base)    # the LoRA reached the frames
    after = frames(wan)
    assert np.array_equal(after, base)                                          # unloaded: exactly as before
    assert wan.transformer.state_dict().keys() == before_weights.keys()        # no LoRA layer left behind
    assert all(torch.equal(v, before_weights[k]) for k, v in wan.transformer.state_dict().items())
    assert not getattr(wan.transformer, "peft_config", None)


def test_lora_scale_weighs_the_adapter(wan, preset_dir):
    """set_adapters' weight: scale 0 gives the base frames exactly, two scales give two different results."""
    make_lora(wan.transformer, preset_dir / "ink.safetensors")
    outs = {}
    for scale in (0.0, 0.5, 1.0):
        (preset_dir / "ink.toml").write_text(f'name = "ink"\n[[lora]]\nfile = "ink.safetensors"\nscale = {scale}\n')
        outs[scale] = frames(wan, "ink")
    assert np.array_equal(outs[0.0], frames(wan))
    assert not np.array_equal(outs[0.5], outs[1.0])


def test_lora_for_another_model_is_refused_naming_the_file(wan, preset_dir):
    """A LoRA whose modules the model lacks, or whose sizes differ, is refused in one line naming the file; a
    good LoRA loaded before the bad one is unloaded again."""
    from engine.backends.wan import WanBackend
    good = make_lora(wan.transformer, preset_dir / "good.safetensors")
    ltx_like = make_lora(wan.transformer, preset_dir / "ltx_like.safetensors", seed=1)
    from safetensors.torch import load_file, save_file
    save_file({k.replace("blocks.", "transformer_blocks."): v for k, v in load_file(ltx_like).items()}, ltx_like)
    wide = make_lora(wan.transformer, preset_dir / "wide.safetensors", modules=MODULES[:1], sizes=(48, 48))
    base = frames(wan)
    for bad, words in ((ltx_like, "which that model does not have"), (wide, "made for another base model")):
        (preset_dir / "mix.toml").write_text(f'name = "mix"\n[[lora]]\nfile = "{good.name}"\n'
                                             f'[[lora]]\nfile = "{bad.name}"\n')
        with pytest.raises(InputError) as e:
            frames(wan, "mix")
        msg = str(e.value)
        assert str(bad) in msg and words in msg and "the wan model" in msg and "\n" not in msg, msg
        assert np.array_equal(frames(wan), base)                               # the good one did not stay
    assert isinstance(wan, WanBackend)


def test_lora_on_the_low_noise_expert_only(tmp_path):
    """wan22-14b: expert = "transformer_2" adapts the low-noise expert; the high-noise one is untouched."""
    from diffusers import WanPipeline

    from engine.backends.wan import WanBackend
    from tests.test_wan22 import tiny_14b
    b = WanBackend.from_pipe(WanPipeline(**tiny_14b(), boundary_ratio=0.6))
    lora = presets.Lora(make_lora(b.transformer_2, tmp_path / "low.safetensors"), 1.0, "transformer_2")
    x, text, gate = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 7, 32), torch.ones(1, 2, 7)
    hi, lo = torch.full((1, 2), 0.9), torch.full((1, 2), 0.3)
    ref = [b.denoise(x, t, text, gate) for t in (hi, lo)]
    with b.loras([lora]):
        out = [b.denoise(x, t, text, gate) for t in (hi, lo)]
    assert torch.equal(out[0], ref[0]) and not torch.allclose(out[1], ref[1])
    assert torch.equal(b.denoise(x, lo, text, gate), ref[1])


def test_lora_preset_entries_are_checked(preset_dir):
    (preset_dir / "x.safetensors").write_bytes(b"")
    cases = {
        'lora = "missing.safetensors"': r"preset a.lora\[0\]: LoRA file .*missing.safetensors does not exist",
        '[[lora]]\nfile = "x.safetensors"\nscale = 9': r"preset a.lora\[0\].scale: 9 is out of range",
        '[[lora]]\nfile = "x.safetensors"\nexpert = "middle"': r"lora\[0\].expert: 'middle' is not allowed",
        '[[lora]]\npath = "x.safetensors"': r"preset a.lora\[0\]: expected a table with file",
    }
    for body, match in cases.items():
        (preset_dir / "a.toml").write_text(f'name = "a"\n{body}\n')
        with pytest.raises(InputError, match=match):
            presets.load("a")
    (preset_dir / "a.toml").write_text('name = "a"\nlora = "x.safetensors"\n')     # one file: scale 1
    assert presets.load("a").loras[0].scale == 1.0


def test_lora_preset_on_a_backend_without_loras_is_refused(backend, preset_dir):
    (preset_dir / "x.safetensors").write_bytes(b"")
    (preset_dir / "a.toml").write_text('name = "a"\nlora = "x.safetensors"\n')
    with pytest.raises(InputError, match="preset: a names LoRA files; the reference backend takes none"):
        generate(ops.t2v("a ball", duration_s=0.5, preset="a", fps=8, resolution=32), backend, Settings(steps=1))
