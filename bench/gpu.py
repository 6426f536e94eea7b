"""Engine vs diffusers' pipelines at real model sizes on a GPU (issue 5; Wan 2.2 and LTX-2: issue 22).

Random-weight models built from the released configs (random weights time the same as trained ones, and nothing
is downloaded), in the bench's dtype directly (`_default_dtype`: A14B's 28.6 B parameters in float32 fit no card):
- ltx: `LTXVideoTransformer3DModel()` and `AutoencoderKLLTXVideo()` at diffusers' defaults, which are LTX-Video 2B
  (0.9.x) and its VAE; 768x512 px x 121 frames at 24 fps.
- wan: Wan 2.1 T2V 1.3B's transformer (dim 1536 = 12 heads x 128, ffn 8960, 30 layers:
  Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json) and `AutoencoderKLWan()` (its defaults are Wan 2.1's
  VAE); 832x480 px x 81 frames at 16 fps.
- wan22-5b: Wan 2.2 TI2V-5B through `WanPipeline(expand_timesteps=True)`: dim 3072 = 24 heads x 128, ffn 14336,
  30 layers, 48 channels in and out, patch (1, 2, 2); the Wan 2.2 VAE, `AutoencoderKLWan(base_dim=160,
  decoder_base_dim=256, z_dim=48, in/out_channels=12 (RGB in 2x2 pixel patches, patch_size=2), is_residual=True,
  scale_factor_spatial=16, scale_factor_temporal=4)` (diffusers' scripts/convert_wan_to_diffusers.py,
  `vae22_diffusers_config`, as Wan-AI/Wan2.2-TI2V-5B-Diffusers ships it; latent statistics 0 / 1, which time the
  same); 1280x704 px x 121 frames at 24 fps; flow shift 5.
- wan22-14b: Wan 2.2 T2V-A14B: two experts of Wan 2.1 14B's size (dim 5120 = 40 heads x 128, ffn 13824,
  40 layers), `transformer_2` taking over below boundary_ratio 0.875, Wan 2.1's VAE; 1280x720 px x 81 frames at
  16 fps; flow shift 3 (the converter's). In bfloat16 the two experts hold 2 x 14.3 B parameters = 57 GB: with
  the VAE and the stand-in text encoder they fit one 80 GB card with ~20 GB left for activations and the decode
  (the real 11 GB UMT5-XXL beside them would leave ~9 GB). `fits` checks each model's parts + WORK_GIB against
  the card; where they do not fit (A14B or LTX-2 on a 48 GB card) they rest on the CPU and both sides run with
  diffusers' model CPU offload, said in the table's memory column (`model`).
- ltx2: LTX-2 through `LTX2Pipeline`: `LTX2VideoTransformer3DModel` at diffusers' defaults, which are the released
  18.9 B (48 layers, 32 x 128 video and 32 x 64 audio heads, 3840-wide captions; rope "split" as released), and
  `AutoencoderKLLTX2Video`, `AutoencoderKLLTX2Audio`, `LTX2Vocoder`, `LTX2TextConnectors` at diffusers' defaults
  (the connectors' are Gemma 3 12B's: 49 hidden states x 3840); LTX2Pipeline's default job, 768x512 px x 121
  frames at 24 fps. Both sides do the engine's work: classifier-free guidance only (LTX2Pipeline's STG and
  modality passes and its rescale off) and the sound decoded (Settings.audio).
The text encoders are one-layer stand-ins with the real output width and sequence length (T5 / UMT5: 4096 x 512;
Gemma 3: 3840 x 1024, its one layer's output standing in for the 48 layers' hidden states the connectors read):
the bench times the denoiser, the guidance and the decode, not the text encoder.

Per model: seconds per denoising step, clocked between the ends of the first and the last step (a step-end
callback on both sides, the GPU synchronised there, so neither text encoding nor the decode's run-to-run spread
enters it), the whole job's wall time, peak GPU memory, and the ratio engine / pipeline of each. `--tiny` runs the
same code on the tests' tiny models on the CPU (tests/test_wan22.py's and tests/test_ltx2.py's for the new
models), so this file is exercised on machines with no GPU (tests/test_bench.py).

With `--modes` (issue 22) the engine alone runs once per memory setting (engine/backends/memory.py: none, model,
group, +fp8...) and reports s/step, peak memory and the PSNR of its frames against the first mode's; `--fast` adds
the "fast" preset's cache hook (first-block cache) with its speed ratio and PSNR against the uncached run, side by
side (diffusers' first-block cache does not know LTX-2's blocks: that row is left out with a note).

Cost. Before it runs the bench prints a `plan:` line per model and an estimate (`--dry-run` prints only those): a
rough model, 2 x (2 x params x tokens + 4 x layers x tokens^2 x width) FLOPs a step at 450 TFLOP/s (Wan 1.3B's
measured H100 rate) plus guessed decode and build times; it said 2.2 min where the H100 run of 2026-11-22
(`--steps 6 --repeats 2`) took 166 s. At the defaults (10 steps, 3 repeats) `python bench/gpu.py` (ltx, wan) is
~3.4 min; at their own job sizes with `--repeats 1` wan22-5b is ~4 min and ltx2 ~1 min, and wan22-14b ~21 min
(75,600 tokens a call, ~30 s a step): over the ~9 min a lent GPU allows, so its first run is shrunk with
`--size` / `--frames` (which replace every chosen model's own).

On a lent H100 / H200, first (estimated ~4.6 + ~2.1 min, which at the 166 s run's ~25 % under-estimate is ~8.5 min;
each row is printed as its model finishes, so a run cut short keeps the rows before):

    python3 bench/gpu.py --models ltx2 wan22-5b --steps 6 --repeats 1; \
    python3 bench/gpu.py --models wan22-14b --size 832x480 --frames 33 --steps 6 --repeats 1

    python bench/gpu.py [--models ltx wan ...] [--steps 10] [--dtype bfloat16] [--frames N] [--size WxH]
    python bench/gpu.py --modes none model group group+fp8 --fast            # memory settings, cache
    python bench/gpu.py --tiny [--models ltx2]                               # anywhere
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.conformance_speed import job_pair, measure, pipeline_and_backend, tiny_components  # noqa: E402
from engine import ops  # noqa: E402
from engine.api import Settings  # noqa: E402

MODELS = ("ltx", "wan", "wan22-5b", "wan22-14b", "ltx2")
# each model's own default job (the pipelines' defaults / the released sample settings)
JOBS = {"ltx": dict(width=768, height=512, frames=121, fps=24), "wan": dict(width=832, height=480, frames=81, fps=16),
        "wan22-5b": dict(width=1280, height=704, frames=121, fps=24),
        "wan22-14b": dict(width=1280, height=720, frames=81, fps=16),
        "ltx2": dict(width=768, height=512, frames=121, fps=24)}
TINY_JOB = dict(width=64, height=64, frames=17, fps=8)
TINY_JOBS = {"ltx2": dict(width=32, height=32, frames=17, fps=8)}  # the tests' LTX-2 size: 2x VAE, full attention
LTX_SCHEDULER = dict(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05,
                     shift_terminal=0.1, use_dynamic_shifting=True, time_shift_type="exponential")


class Shape(NamedTuple):
    """What the time estimate and the fit check read: a rough model of a run, not a measurement."""
    params_b: float        # transformer parameters a video token passes through a call (one expert), billions
    layers: int
    width: int             # attention width (heads x head dim)
    frames_per_token: int  # pixel frames per latent frame
    pixels_per_token: int  # pixels per token side (VAE factor x patch)
    decode_s: float        # seconds of VAE decode per megapixel-frame (guessed; the 2.2 VAE is wider)
    held_b: float          # parameters resident on the GPU without offload (every part), billions


# held_b: the parameters real_components builds (counted on the meta device); ltx2's 18.9 B transformer runs
# ~14 B of them on video tokens (its audio stream sees ~25 tokens a second)
SHAPES = {"ltx": Shape(1.9, 28, 2048, 8, 32, 0.05, 2.5), "wan": Shape(1.4, 30, 1536, 4, 16, 0.15, 1.7),
          "wan22-5b": Shape(5.0, 30, 3072, 4, 32, 0.3, 5.9), "wan22-14b": Shape(14.3, 40, 5120, 4, 16, 0.15, 28.9),
          "ltx2": Shape(14.0, 48, 4096, 8, 32, 0.05, 22.0)}
FLOPS = 450e12   # bf16 FLOP/s reached: Wan 1.3B's 1.284 s/step on an H100 (bench/RESULTS.md, 2026-11-22)
WORK_GIB = 16    # activations and VAE decode beside the weights at these sizes: a rough allowance
STARTUP_S = 30   # imports, CUDA context, the tokenizer: once a command


@contextmanager
def _default_dtype(dtype):
    """Build modules in `dtype` directly: Wan 2.2 A14B's 28 B parameters in float32 (112 GB) fit no card."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _text_stand_in(model: str, tokenizer):
    """A one-layer T5 (ltx) / UMT5 (Wan) encoder of the real width, 4096."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel
    cfg, cls = (T5Config, T5EncoderModel) if model == "ltx" else (UMT5Config, UMT5EncoderModel)
    return cls(cfg(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=1024, num_layers=1, num_heads=8,
                   pad_token_id=0, decoder_start_token_id=0)).eval()


def _gemma_stand_in(tokenizer, hidden_states: int = 49):
    """One Gemma 3 layer at Gemma 3 12B's width (3840) reporting 49 hidden states, as the 48-layer model does:
    LTX-2's connectors read them all (49 x 3840 features a token), so their cost is the real one."""
    from transformers import Gemma3TextConfig, Gemma3TextModel

    class GemmaStandIn(Gemma3TextModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            if out.hidden_states is not None:  # the last layer's output stands in for the 47 layers left out
                out.hidden_states = tuple(out.hidden_states) + (out.hidden_states[-1],) * (
                    hidden_states - len(out.hidden_states))
            return out
    return GemmaStandIn(Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=3840, intermediate_size=15360, num_hidden_layers=1,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, max_position_embeddings=4096,
        pad_token_id=0)).eval()


def _wan_transformer(heads: int, ffn: int, layers: int, channels: int = 16):
    """A Wan transformer of a released size: heads x 128 wide, UMT5's 4096-wide text."""
    from diffusers import WanTransformer3DModel
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=128,
                                 in_channels=channels, out_channels=channels, text_dim=4096, freq_dim=256,
                                 ffn_dim=ffn, num_layers=layers, cross_attn_norm=True,
                                 qk_norm="rms_norm_across_heads", eps=1e-6)


def _wan_parts(model: str) -> dict:
    """WanPipeline's components (and settings) of a Wan model at its released size; Euler on both sides (the
    engine's solver), at the flow shift diffusers' converter writes (3.0; TI2V-5B 5.0)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler as Euler
    if model == "wan":            # Wan 2.1 T2V 1.3B; AutoencoderKLWan()'s defaults are Wan 2.1's VAE
        return dict(transformer=_wan_transformer(12, 8960, 30), vae=AutoencoderKLWan(), scheduler=Euler(shift=3.0))
    if model == "wan22-5b":       # TI2V-5B and the Wan 2.2 VAE (48 channels, 2x2 pixel patches, 16x in space)
        vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, in_channels=12, out_channels=12,
                               patch_size=2, is_residual=True, scale_factor_spatial=16, scale_factor_temporal=4,
                               latents_mean=[0.0] * 48, latents_std=[1.0] * 48)  # statistics: no effect on time
        return dict(transformer=_wan_transformer(24, 14336, 30, 48), vae=vae, scheduler=Euler(shift=5.0),
                    expand_timesteps=True)
    # T2V-A14B: two experts of Wan 2.1 14B's size, switched at boundary_ratio 0.875, with Wan 2.1's VAE
    return dict(transformer=_wan_transformer(40, 13824, 40), transformer_2=_wan_transformer(40, 13824, 40),
                vae=AutoencoderKLWan(), scheduler=Euler(shift=3.0), boundary_ratio=0.875)


def _ltx2_parts(tokenizer) -> dict:
    """LTX2Pipeline's components at diffusers' defaults (the transformer's are LTX-2's released 48 layers, 32 x 128
    video and 32 x 64 audio heads, 3840-wide captions; its rope 'split' as released), Gemma replaced by a stand-in."""
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    return dict(transformer=LTX2VideoTransformer3DModel(rope_type="split"), vae=AutoencoderKLLTX2Video(),
                audio_vae=AutoencoderKLLTX2Audio(), connectors=LTX2TextConnectors(), vocoder=LTX2Vocoder(),
                text_encoder=_gemma_stand_in(tokenizer), scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER))


def real_components(model: str) -> dict:
    """Released-size random-weight components and pipeline settings (build under `torch.device('cuda')` to
    allocate there, under `_default_dtype` to build in bfloat16)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from tests.conftest import tiny_tokenizer
    tokenizer = tiny_tokenizer()
    if model == "ltx":
        from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
        parts = dict(transformer=LTXVideoTransformer3DModel(), vae=AutoencoderKLLTXVideo(),
                     scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER))   # LTX-Video's scheduler config
    elif model == "ltx2":
        tokenizer.padding_side = "left"  # as Gemma's
        parts = _ltx2_parts(tokenizer)
    else:
        parts = _wan_parts(model)
    parts.setdefault("text_encoder", _text_stand_in(model, tokenizer))
    return {k: v.eval() if isinstance(v, torch.nn.Module) else v for k, v in parts.items()} | {"tokenizer": tokenizer}


def _cast(parts: dict, device, dtype) -> dict:
    """Every module of `parts` on `device` in `dtype` (a module already in dtype is only moved: a cast earns
    diffusers' warning)."""
    for k, v in parts.items():
        if isinstance(v, torch.nn.Module):
            parts[k] = v.to(device) if v.dtype == dtype else v.to(device, dtype)
    return parts


def job_for(model: str, tiny: bool, frames: int | None = None, size: str | None = None) -> dict:
    """The model's job (TINY_JOB(S) with --tiny), with --frames / --size WxH in place of its own."""
    job = dict(TINY_JOBS.get(model, TINY_JOB) if tiny else JOBS[model])
    if frames:
        job["frames"] = frames
    if size:
        job["width"], job["height"] = (int(v) for v in size.lower().split("x"))
    return job


def tokens(model: str, job: dict) -> int:
    """Transformer tokens of a job: latent frames x (height / pixels a token) x (width / pixels a token)."""
    s = SHAPES[model]
    return ((job["frames"] - 1) // s.frames_per_token + 1) * (job["height"] // s.pixels_per_token) * (
        job["width"] // s.pixels_per_token)


def fits(model: str, total_bytes: int) -> bool:
    """Whether every part stays on the card in bf16 beside WORK_GIB of activations and decode (else: offload)."""
    return SHAPES[model].held_b * 1e9 * 2 + WORK_GIB * 2**30 <= 0.95 * total_bytes


def estimate_s(model: str, job: dict, steps: int, runs: int, offload: bool = False) -> float:
    """Rough seconds for `runs` jobs of `steps` steps (two guidance branches each) plus building the model.

    Step: 2 x (2 x params x T + 4 x layers x T^2 x width) FLOPs at FLOPS; decode: decode_s a megapixel-frame;
    build: ~1 s a billion parameters on the GPU (random init), ~10 s on the CPU (model offload).
    """
    s, t = SHAPES[model], tokens(model, job)
    step = 2 * (2 * s.params_b * 1e9 * t + 4 * s.layers * t * t * s.width) / FLOPS
    decode = job["frames"] * job["width"] * job["height"] / 1e6 * s.decode_s
    return runs * (steps * step + decode) + s.held_b * (10 if offload else 1)


def timed(fn, device: torch.device, marks: list) -> tuple[float, float, float]:
    """-> (seconds, seconds per step, peak MiB) of one call: GPU memory on a GPU, resident memory on the CPU.

    marks: the list the job's step-end callback appends perf_counter() to.
    """
    marks.clear()
    if device.type != "cuda":
        seconds, peak = measure(fn)
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds, peak = time.perf_counter() - t0, (torch.cuda.max_memory_allocated() - base) / 2**20
    if len(marks) < 2:
        raise RuntimeError(f"{len(marks)} step callbacks: a step is clocked between two")
    return seconds, (marks[-1] - marks[0]) / (len(marks) - 1), peak


def _build(model: str, tiny: bool, device: torch.device, dtype) -> dict:
    """The model's components (tiny: the tests'; else released sizes, built in dtype) on `device` in `dtype`."""
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype):
        parts = tiny_components(model) if tiny else real_components(model)
    return _cast(parts, device, dtype)


def _backend_opts(model: str, tiny: bool) -> dict:
    """The tiny LTX-2's text length (its connectors' registers and Gemma's positions are the tests')."""
    if tiny and model == "ltx2":
        from tests.test_ltx2 import SEQ
        return dict(max_sequence_length=SEQ)
    return {}


def bench_model(model: str, tiny: bool, steps: int, guidance: float, device: torch.device, dtype,
                repeats: int = 3, job: dict | None = None) -> dict:
    """Medians of `repeats` interleaved runs -> per-step seconds, wall, peak memory of both sides.

    A model whose parts do not fit the card (`fits`) rests on the CPU and runs with diffusers' model CPU offload on
    both sides (the backend's `memory="model"`, then the pipeline's own `enable_model_cpu_offload`: the same hooks
    on the shared modules); its row says `model` in the memory column.
    """
    job = job or job_for(model, tiny)
    offload = device.type == "cuda" and not fits(model, torch.cuda.get_device_properties(device).total_memory)
    parts = _build(model, tiny, torch.device("cpu") if offload else device, dtype)
    pipe, backend = pipeline_and_backend(model, parts, device=device, dtype=dtype, memory="model" if offload
                                         else "none", **_backend_opts(model, tiny))
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    aspect = f"{job['width']}:{job['height']}"
    tl = ops.t2v("a red ball rolls to the left across a wooden table", duration_s=job["frames"] / job["fps"],
                 fps=job["fps"], aspect=aspect, resolution=min(job["width"], job["height"]))
    marks: list[float] = []

    def on_step():
        if device.type == "cuda":
            torch.cuda.synchronize()   # the step's kernels have run, not only been queued
        marks.append(time.perf_counter())

    with torch.no_grad():
        engine_job, pipe_job, g = job_pair(model, pipe, backend, tl, Settings(steps=steps, guidance=guidance),
                                           device, on_step)
        engine_job(), pipe_job()                           # warm-up (kernels, allocator, lazy imports)
        runs = []
        for _ in range(repeats):                           # interleaved, so drift hits both alike
            runs.append((timed(engine_job, device, marks), len(marks), timed(pipe_job, device, marks), len(marks)))
    if any(r[1] != steps or r[3] != steps for r in runs):
        raise RuntimeError(f"step callbacks per run {[(r[1], r[3]) for r in runs]}, expected {steps} a side")
    runs = [(r[0], r[2]) for r in runs]
    res = {"model": model, "job": f"{g.width}x{g.height}x{g.n_frames}", "memory": "model" if offload else "none",
           "tokens": g.latent_frames * g.latent_h * g.latent_w}
    for i, side in enumerate(("engine", "pipeline")):
        wall, step, peak = (statistics.median(r[i][k] for r in runs) for k in range(3))
        res[side] = {"s_per_step": step, "wall_s": wall, "peak_mib": peak}
    res["step_ratio"] = res["engine"]["s_per_step"] / res["pipeline"]["s_per_step"]
    res["wall_ratio"] = res["engine"]["wall_s"] / res["pipeline"]["wall_s"]
    res["memory_ratio"] = res["engine"]["peak_mib"] / max(res["pipeline"]["peak_mib"], 1e-9)
    return res


def engine_backend(model: str, parts: dict, **opts):
    """The engine's backend over `parts` (the pipeline built beside it is dropped: its memory hooks own the
    modules)."""
    return pipeline_and_backend(model, parts, **opts)[1]


def bench_modes(model: str, tiny: bool, modes: list[str], cache: str | None, steps: int, guidance: float,
                device: torch.device, dtype, job: dict | None = None) -> list[dict]:
    """The engine per memory setting (fresh components each time: hooks stay on the modules they are put on),
    then the first setting with `cache`: s/step, wall, peak memory, PSNR and speed against the first run."""
    import numpy as np

    from engine.api import generate
    job = job or job_for(model, tiny)
    tl = ops.t2v("a red ball rolls to the left across a wooden table", duration_s=job["frames"] / job["fps"], seed=0,
                 fps=job["fps"], aspect=f"{job['width']}:{job['height']}", resolution=min(job["width"], job["height"]))
    rows, ref = [], None
    for mode, kind in [(m, "none") for m in modes] + ([(modes[0], cache)] if cache else []):
        parts = _build(model, tiny, torch.device("cpu"), dtype)   # on the CPU: offload starts there
        backend = engine_backend(model, parts, device=device, dtype=dtype, memory=mode, **_backend_opts(model, tiny))
        marks: list[float] = []

        def run():
            with backend.cached(kind):
                return generate(tl, backend, Settings(steps=steps, guidance=guidance), callback=lambda d: (
                    torch.cuda.synchronize() if device.type == "cuda" else None, marks.append(time.perf_counter())))

        try:
            run()                                          # warm-up (kernels, allocator, hooks' first moves)
        except ValueError as e:  # diffusers' cache hooks know some transformers' blocks only (not LTX-2's)
            if kind == "none":
                raise
            print(f"note: {model}: no {kind} cache row ({str(e).strip().splitlines()[0]})", flush=True)
            continue
        out = []
        wall, step, peak = timed(lambda: out.append(run()[0]), device, marks)
        ref = out[0] if ref is None else ref
        mse = float(np.mean((out[0].astype(float) - ref.astype(float)) ** 2))
        rows.append({"model": model, "mode": str(backend.memory) if kind == "none" else f"fast:{kind}",
                     "s_per_step": step, "wall_s": wall, "peak_mib": peak,
                     "psnr": float("inf") if mse == 0 else 10 * float(np.log10(255 ** 2 / mse))})
        rows[-1]["speed_ratio"] = rows[0]["s_per_step"] / step
        del backend, parts
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def print_modes(rows: list[dict]) -> None:
    print("| model | memory / cache | s/step | speed vs first | wall s | peak MiB | PSNR vs first (dB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r['s_per_step']:.3f} | {r['speed_ratio']:.2f} | {r['wall_s']:.1f} | "
              f"{r['peak_mib']:.0f} | {r['psnr']:.1f} |", flush=True)


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=["ltx", "wan"])
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny models on the CPU (checks this script)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--frames", type=int, default=None, help="frames of every job instead of each model's own")
    ap.add_argument("--size", default=None, help="WxH of every job instead of each model's own (e.g. 832x480)")
    ap.add_argument("--dry-run", action="store_true", help="print the jobs and the time estimate, run nothing")
    ap.add_argument("--modes", nargs="+", default=None,
                    help="memory settings to compare, the engine alone (e.g. none model group group+fp8)")
    ap.add_argument("--fast", action="store_true", help="with --modes: also the fast preset's first-block cache")
    args = ap.parse_args(argv)
    if args.steps < 3:
        ap.error("--steps: at least 3 (steps are clocked between the first and the last)")
    if args.size and not re.fullmatch(r"\d+x\d+", args.size.lower()):
        ap.error("--size: WxH in pixels, e.g. 832x480")
    return ap, args


def print_plan(args, jobs: dict, total_bytes: int | None) -> float:
    """Each model's job, whether it fits the card without offload, and the estimated seconds -> their total."""
    runs = 2 * len(args.modes) + (2 if args.fast else 0) if args.modes else 2 * (1 + args.repeats)
    card = total_bytes or 80 * 10**9   # no GPU here (--dry-run): an 80 GB card
    total = float(STARTUP_S)
    for m, job in jobs.items():
        fit = fits(m, card)
        est = estimate_s(m, job, args.steps, runs, offload=bool(args.modes) or not fit)
        total += est
        print(f"plan: {m} {job['width']}x{job['height']}x{job['frames']} at {job['fps']} fps, {tokens(m, job)} tokens, "
              f"{SHAPES[m].held_b:.1f} B parameters ({'fit' if fit else 'do not fit: model offload'} on a "
              f"{card / 1e9:.0f} GB card), ~{est:.0f} s")
    print(f"plan: ~{total / 60:.1f} min in all (a rough model: {FLOPS / 1e12:.0f} TFLOP/s, guessed decode and build)"
          + ("; over the ~9 min a lent GPU allows: shrink with --frames / --size / --steps / --repeats"
             if total > 540 else ""), flush=True)
    return total


def print_row(r: dict) -> None:
    e, p = r["engine"], r["pipeline"]
    print(f"| {r['model']} | {r['job']} | {r['tokens']} | {e['s_per_step']:.3f} | {p['s_per_step']:.3f} | "
          f"{r['step_ratio']:.3f} | {r['wall_ratio']:.3f} | {e['peak_mib']:.0f} | {p['peak_mib']:.0f} | "
          f"{r['memory_ratio']:.3f} | {r['memory']} |", flush=True)


def main(argv=None):
    ap, args = _args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny and not args.dry_run:
        ap.error("no GPU here: run with --tiny to check the script on the CPU (or --dry-run for the plan)")
    dtype = torch.float32 if args.tiny else getattr(torch, args.dtype)
    jobs = {m: job_for(m, args.tiny, args.frames, args.size) for m in args.models}
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device {name}, dtype {str(dtype).split('.')[-1]}, {args.steps} steps, guidance {args.guidance}")
    if not args.tiny:  # the estimate models real sizes on a GPU
        print_plan(args, jobs, torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None)
    if args.dry_run:
        return []
    if args.modes:
        rows = [r for m in args.models for r in bench_modes(m, args.tiny, args.modes, "first-block" if args.fast
                                                            else None, args.steps, args.guidance, device, dtype,
                                                            jobs[m])]
        print_modes(rows)
        return rows
    print("| model | job (WxHxframes) | latent tokens | engine s/step | diffusers s/step | step ratio | "
          "wall ratio | engine peak MiB | diffusers peak MiB | memory ratio | memory |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for model in args.models:
        results.append(bench_model(model, args.tiny, args.steps, args.guidance, device, dtype, args.repeats,
                                   jobs[model]))
        print_row(results[-1])
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


if __name__ == "__main__":
    main()
