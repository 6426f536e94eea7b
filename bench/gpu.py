"""Engine vs diffusers' pipelines at real model sizes on a GPU (issue 5).

Random-weight models built from the released configs (random weights time the same as
trained ones, and nothing is downloaded):
- ltx: `LTXVideoTransformer3DModel()` and `AutoencoderKLLTXVideo()` at diffusers' defaults,
  which are LTX-Video 2B (0.9.x) and its VAE; 768x512 px x 121 frames at 24 fps.
- wan: Wan 2.1 T2V 1.3B's transformer (dim 1536 = 12 heads x 128, ffn 8960, 30 layers:
  Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json) and `AutoencoderKLWan()`
  (its defaults are Wan 2.1's VAE); 832x480 px x 81 frames at 16 fps.
The text encoders are one-layer stand-ins with the real output width (4096) and sequence
length: the bench times the denoiser, the guidance and the VAE decode, not T5.

Per model: seconds per denoising step, clocked between the ends of the first and the last
step (a step-end callback on both sides, the GPU synchronised there, so neither text
encoding nor the decode's run-to-run spread enters it), the whole job's wall time, peak GPU
memory, and the ratio engine / pipeline of each. `--tiny` runs the same code on the tests' tiny models on
the CPU, so this file is exercised on machines with no GPU (tests/test_bench.py).

With `--modes` (issue 22) the engine alone runs once per memory setting (engine/backends/memory.py:
none, model, group, +fp8...) and reports s/step, peak memory and the PSNR of its frames against the
first mode's; `--fast` adds the "fast" preset's cache hook (first-block cache) with its speed ratio
and PSNR against the uncached run, side by side.

    python bench/gpu.py [--models ltx wan] [--steps 10] [--dtype bfloat16]   # on a GPU
    python bench/gpu.py --modes none model group group+fp8 --fast            # memory settings, cache
    python bench/gpu.py --tiny                                               # anywhere
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.conformance_speed import job_pair, measure, pipeline_and_backend, tiny_components  # noqa: E402
from engine import ops  # noqa: E402
from engine.api import Settings  # noqa: E402

JOBS = {"ltx": dict(width=768, height=512, frames=121, fps=24), "wan": dict(width=832, height=480, frames=81, fps=16)}
TINY_JOB = dict(width=64, height=64, frames=17, fps=8)


def _text_stand_in(model: str, tokenizer):
    """A one-layer T5 (ltx) / UMT5 (wan) encoder of the real width, 4096."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel
    cfg, cls = (T5Config, T5EncoderModel) if model == "ltx" else (UMT5Config, UMT5EncoderModel)
    return cls(cfg(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=1024, num_layers=1, num_heads=8,
                   pad_token_id=0, decoder_start_token_id=0)).eval()


def real_components(model: str) -> dict:
    """Released-size random-weight components (build under `torch.device('cuda')` to allocate there)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from tests.conftest import tiny_tokenizer
    tokenizer = tiny_tokenizer()
    if model == "ltx":
        from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
        transformer, vae = LTXVideoTransformer3DModel(), AutoencoderKLLTXVideo()
        scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096,
                                                    max_shift=2.05, shift_terminal=0.1, use_dynamic_shifting=True,
                                                    time_shift_type="exponential")   # LTX-Video's scheduler config
    else:
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                                            in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
                                            ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                                            qk_norm="rms_norm_across_heads", eps=1e-6)
        vae = AutoencoderKLWan()
        # Euler on Wan's flow shift (3.0 at 480p) for both sides: the engine's solver is Euler
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return dict(transformer=transformer.eval(), vae=vae.eval(), text_encoder=_text_stand_in(model, tokenizer),
                tokenizer=tokenizer, scheduler=scheduler)


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


def bench_model(model: str, tiny: bool, steps: int, guidance: float, device: torch.device, dtype,
                repeats: int = 3) -> dict:
    """Medians of `repeats` interleaved runs -> per-step seconds, wall, peak memory of both sides."""
    job = TINY_JOB if tiny else JOBS[model]
    torch.manual_seed(0)
    with torch.device(device):
        parts = tiny_components(model) if tiny else real_components(model)
    for k in ("transformer", "vae", "text_encoder"):
        if parts[k].dtype != dtype:   # a cast of a model already in dtype only earns diffusers' warning
            parts[k] = parts[k].to(device, dtype)
    pipe, backend = pipeline_and_backend(model, parts)
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
    res = {"model": model, "job": f"{g.width}x{g.height}x{g.n_frames}", "tokens": g.latent_frames * g.latent_h * g.latent_w}
    for i, side in enumerate(("engine", "pipeline")):
        wall, step, peak = (statistics.median(r[i][k] for r in runs) for k in range(3))
        res[side] = {"s_per_step": step, "wall_s": wall, "peak_mib": peak}
    res["step_ratio"] = res["engine"]["s_per_step"] / res["pipeline"]["s_per_step"]
    res["wall_ratio"] = res["engine"]["wall_s"] / res["pipeline"]["wall_s"]
    res["memory_ratio"] = res["engine"]["peak_mib"] / max(res["pipeline"]["peak_mib"], 1e-9)
    return res


def engine_backend(model: str, parts: dict, **opts):
    """The engine's backend over `parts` (no pipeline beside it: its memory hooks own the modules)."""
    from engine.backends.ltx import LTXBackend
    from engine.backends.wan import WanBackend, scheduler_config
    sched = dict(parts["scheduler"].config) if model == "ltx" else scheduler_config(parts["scheduler"])
    cls = LTXBackend if model == "ltx" else WanBackend
    return cls(parts["transformer"], parts["vae"], parts["text_encoder"], parts["tokenizer"], sched, **opts)


def bench_modes(model: str, tiny: bool, modes: list[str], cache: str | None, steps: int, guidance: float,
                device: torch.device, dtype) -> list[dict]:
    """The engine per memory setting (fresh components each time: hooks stay on the modules they are put on),
    then the first setting with `cache`: s/step, wall, peak memory, PSNR and speed against the first run."""
    import numpy as np

    from engine.api import generate
    job = TINY_JOB if tiny else JOBS[model]
    tl = ops.t2v("a red ball rolls to the left across a wooden table", duration_s=job["frames"] / job["fps"], seed=0,
                 fps=job["fps"], aspect=f"{job['width']}:{job['height']}", resolution=min(job["width"], job["height"]))
    rows, ref = [], None
    for mode, kind in [(m, "none") for m in modes] + ([(modes[0], cache)] if cache else []):
        torch.manual_seed(0)
        parts = tiny_components(model) if tiny else real_components(model)   # on the CPU: offload starts there
        for k in ("transformer", "vae", "text_encoder"):
            parts[k] = parts[k].to(dtype)
        backend = engine_backend(model, parts, device=device, dtype=dtype, memory=mode)
        marks: list[float] = []

        def run():
            with backend.cached(kind):
                return generate(tl, backend, Settings(steps=steps, guidance=guidance), callback=lambda d: (
                    torch.cuda.synchronize() if device.type == "cuda" else None, marks.append(time.perf_counter())))

        run()                                              # warm-up (kernels, allocator, hooks' first moves)
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=tuple(JOBS), default=list(JOBS))
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny models on the CPU (checks this script)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--modes", nargs="+", default=None,
                    help="memory settings to compare, the engine alone (e.g. none model group group+fp8)")
    ap.add_argument("--fast", action="store_true", help="with --modes: also the fast preset's first-block cache")
    args = ap.parse_args(argv)
    if args.steps < 3:
        ap.error("--steps: at least 3 (steps are clocked between the first and the last)")
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        ap.error("no GPU here: run with --tiny to check the script on the CPU")
    dtype = torch.float32 if args.tiny else getattr(torch, args.dtype)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device {name}, dtype {str(dtype).split('.')[-1]}, {args.steps} steps, guidance {args.guidance}")
    print("| model | job (WxHxframes) | latent tokens | engine s/step | diffusers s/step | step ratio | "
          "wall ratio | engine peak MiB | diffusers peak MiB | memory ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    if args.modes:
        rows = [r for m in args.models for r in bench_modes(m, args.tiny, args.modes, "first-block" if args.fast
                                                            else None, args.steps, args.guidance, device, dtype)]
        print_modes(rows)
        return rows
    results = []
    for model in args.models:
        r = bench_model(model, args.tiny, args.steps, args.guidance, device, dtype, args.repeats)
        results.append(r)
        e, p = r["engine"], r["pipeline"]
        print(f"| {model} | {r['job']} | {r['tokens']} | {e['s_per_step']:.3f} | {p['s_per_step']:.3f} | "
              f"{r['step_ratio']:.3f} | {r['wall_ratio']:.3f} | {e['peak_mib']:.0f} | {p['peak_mib']:.0f} | {r['memory_ratio']:.3f} |",
              flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


if __name__ == "__main__":
    main()
