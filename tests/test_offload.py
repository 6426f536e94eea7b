"""Memory settings (issue 22): diffusers' offload / tiling / layerwise-fp8 hooks on the real backends, on tiny Wan
and LTX models on the CPU (the hooks move weights between "cpu" and the compute device, here the CPU too, so
the code paths run; the GPU's memory and speed per mode are measured by bench/gpu.py).

none, model and group offload give the same frames bit for bit; fp8 storage rounds every weight to 3 mantissa
bits, so its frames are held to a stated tolerance.
"""
from contextlib import nullcontext

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from engine import ops  # noqa: E402
from engine.api import Settings, generate  # noqa: E402
from engine.backends.memory import Memory, parse  # noqa: E402
from engine.params import InputError  # noqa: E402

FP8_TOLERANCE = 8  # max |difference| in 0..255 frame values with float8_e4m3fn weights (measured 1 wan, 4 ltx)


def wan_with(memory: str):
    """A fresh tiny Wan backend (hooks stay on the modules they are put on) with a memory setting."""
    from engine.backends.wan import WanBackend
    from tests.test_wan import tiny_components
    c = tiny_components()
    return WanBackend(c["transformer"], c["vae"], c["text_encoder"], c["tokenizer"], dict(c["scheduler"].config),
                      memory=memory)


def ltx_with(memory: str):
    from engine.backends.ltx import LTXBackend
    from tests.test_ltx import tiny_components
    c = tiny_components()
    return LTXBackend(c["transformer"], c["vae"], c["text_encoder"], c["tokenizer"], dict(c["scheduler"].config),
                      memory=memory)


def clip(backend, steps: int = 2):
    tl = ops.t2v("a red ball rolls", duration_s=1.0, seed=1, fps=8, aspect="1:1", resolution=32)
    return generate(tl, backend, Settings(steps=steps, guidance=2.0))[0]               # (N, H, W, 3) uint8


@pytest.fixture(scope="module")
def reference_clips():
    return {"wan": clip(wan_with("none")), "ltx": clip(ltx_with("none"))}


@pytest.mark.parametrize("memory", ["model", "group", "none+slicing"])
@pytest.mark.parametrize("make", [wan_with, ltx_with], ids=["wan", "ltx"])
def test_offload_modes_give_the_same_frames(reference_clips, make, memory):
    b = make(memory)
    assert str(b.memory) == memory
    out = clip(b)
    assert np.array_equal(out, reference_clips[b.name]), f"{b.name} {memory}"
    if memory == "model":  # diffusers' hooks put every part back on the CPU after its turn
        assert all(next(m.parameters()).device.type == "cpu" for m in (b.transformer, b.vae, b.text_encoder))


@pytest.mark.parametrize("make", [wan_with, ltx_with], ids=["wan", "ltx"])
def test_offload_fp8_storage_is_close_and_stores_float8(reference_clips, make):
    b = make("group+fp8")
    to_q = next(m for n, m in b.transformer.named_modules() if n.endswith("0.attn1.to_q"))
    assert to_q.weight.dtype == torch.float8_e4m3fn                                 # stored; computed in float32
    out = clip(b)
    diff = np.abs(out.astype(int) - reference_clips[b.name].astype(int)).max()
    assert 0 < diff <= FP8_TOLERANCE, diff


def test_offload_vae_tiling_is_diffusers(reference_clips):
    b = wan_with("none+tiling")
    assert b.vae.use_tiling and not b.vae.use_slicing
    assert clip(b).shape == reference_clips["wan"].shape


def test_offload_settings_are_parsed_and_refused_in_words(monkeypatch):
    monkeypatch.delenv("CINEPATCH_MEMORY", raising=False)
    assert parse("group+fp8+tiling") == Memory("group", True, True, False)
    assert parse("fp8") == Memory("none", True)
    assert parse("auto", "wan22-14b", "cuda") == Memory("group", tiling=True)     # the backend's GPU default
    assert parse(None, "wan22-14b", "cpu") == Memory()                              # nothing to offload to
    monkeypatch.setenv("CINEPATCH_MEMORY", "model")
    assert parse(None, "ltx", "cuda") == Memory("model")                            # the server-wide override
    for bad in ("fast", "model+group", "group+fp16", "+"):
        with pytest.raises(InputError, match=r"^memory: .* one of none, model, group with any of fp8, tiling"):
            parse(bad)


def test_offload_out_of_memory_says_which_setting_to_try():
    from engine.params import OUT_OF_MEMORY
    assert "memory setting" in OUT_OF_MEMORY and "model" in OUT_OF_MEMORY and "\n" not in OUT_OF_MEMORY


def test_offload_setting_from_the_cli(monkeypatch, capsys):
    """--memory reaches the backend's loader; on a backend with its own weights it is refused in one line."""
    from engine import cli
    from engine.backends import registry
    seen = {}

    def fake_wan(**opts):
        seen.update(opts)
        raise InputError("model: stop here")
    monkeypatch.setitem(registry.FACTORIES, "wan22-5b", fake_wan)
    assert cli.main(["t2v", "a ball", "--backend", "wan22-5b", "--memory", "group+fp8", "--out", "x.mp4"]) == 2
    assert seen["memory"] == "group+fp8"
    assert cli.main(["t2v", "a ball", "--backend", "reference", "--memory", "model", "--out", "x.mp4"]) == 2
    err = capsys.readouterr().err
    assert "memory: --memory is for real-model backends" in err


# ----------------------------------------------------------------------------- the "fast" preset: cache hooks
@pytest.mark.parametrize("kind", ["first-block", "taylorseer"])
def test_offload_fast_preset_cache_skips_blocks_and_is_removed_after(reference_clips, kind, monkeypatch):
    """A cache hook really skips transformer blocks on some steps (counted), the frames stay close, and after the
    job the model is exactly as before."""
    from engine.backends import diffusers_parts
    if kind == "first-block":  # threshold 1: every step after the first reuses the cached residual
        from diffusers import FirstBlockCacheConfig
        monkeypatch.setitem(diffusers_parts.CACHES, kind, lambda: FirstBlockCacheConfig(threshold=1.0))
    b = wan_with("none")
    calls = []  # a projection inside block 1's self-attention: not run when the cache stands in for it
    hook = b.transformer.blocks[1].attn1.to_q.register_forward_hook(lambda *a: calls.append(1))
    base = clip(b, steps=8)
    n_plain = len(calls)
    with b.cached(kind):
        cached = clip(b, steps=8)
    n_cached = len(calls) - n_plain
    hook.remove()
    assert 0 < n_cached < n_plain, (n_plain, n_cached)                 # some block calls were skipped
    assert not np.array_equal(cached, base) and np.array_equal(clip(b, steps=8), base)
    assert psnr(cached, base) > 15


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def test_offload_fast_preset_is_shipped_and_applied(reference_clips, monkeypatch):
    from engine import presets
    p = presets.load("fast")
    assert p.cache == "first-block" and not p.loras
    b = wan_with("none")
    seen = []
    monkeypatch.setattr(type(b), "cached", lambda self, kind: (seen.append(kind), nullcontext())[1])
    tl = ops.t2v("a red ball rolls", duration_s=1.0, seed=1, fps=8, aspect="1:1", resolution=32, preset="fast")
    generate(tl, b, Settings(steps=2, guidance=2.0))
    assert seen == ["first-block"]


def test_offload_bench_reports_each_mode_and_the_cache_on_the_cpu(capsys):
    """bench/gpu.py --modes / --fast on the tiny models (a GPU runs them at real sizes)."""
    from bench.gpu import main
    rows = main(["--tiny", "--models", "wan", "--steps", "3", "--repeats", "1", "--modes", "none", "group+fp8",
                 "--fast"])
    modes = {r["mode"]: r for r in rows if "mode" in r}
    assert set(modes) == {"none", "group+fp8", "fast:first-block"}
    assert all(r["s_per_step"] > 0 and r["peak_mib"] >= 0 for r in modes.values())
    assert modes["none"]["psnr"] == float("inf") and modes["fast:first-block"]["speed_ratio"] > 0
    out = capsys.readouterr().out
    assert "| wan | group+fp8 |" in out and "| wan | fast:first-block |" in out


def test_offload_real_backends_load_on_the_gpu_in_bfloat16_when_there_is_one(monkeypatch):
    from engine.backends import registry
    monkeypatch.delenv("CINEPATCH_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert registry._on_device({}) == {"device": "cuda", "dtype": torch.bfloat16}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert registry._on_device({}) == {"device": "cpu"}
    monkeypatch.setenv("CINEPATCH_DEVICE", "cuda:1")
    assert registry._on_device({"dtype": torch.float16}) == {"device": "cuda:1", "dtype": torch.float16}
