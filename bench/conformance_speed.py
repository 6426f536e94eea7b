"""Engine vs diffusers' LTXPipeline / WanPipeline on the same model and job (issue 5), on the CPU.

Both run the same text-to-video job on the same components (the tiny random models of
tests/test_ltx.py and tests/test_wan.py, or a somewhat larger `--size small` one):
prompt encoding, the denoising loop with classifier-free guidance, and the final decode
to host frames (engine: `engine.api.generate` -> uint8 clips; pipeline: `output_type="np"`).
bench/gpu.py times the same pair at real model sizes on a GPU.

Prints the ratio engine / pipeline of wall time (goal <= 1.03) and of peak memory
(goal <= 1.0): medians over several interleaved runs. Peak memory is the rise of the
process's resident high-water mark over its level before the run (Linux: VmHWM reset
through /proc/self/clear_refs, freed heap returned with malloc_trim before each run).

    python bench/conformance_speed.py [--model ltx|wan] [--size tiny|small] [--steps 8] [--repeats 5]
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import ops  # noqa: E402
from engine.api import Settings, generate  # noqa: E402
from engine.plan import compile  # noqa: E402

PROMPT = "a red ball rolls to the left across a wooden table"


def small_components(model: str) -> dict:
    """The tiny components with a wider, deeper transformer: time goes into the model, not the loop."""
    torch.manual_seed(1)
    if model == "ltx":
        from diffusers import LTXVideoTransformer3DModel
        from tests.test_ltx import tiny_components
        parts = tiny_components()
        parts["transformer"] = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                                          num_attention_heads=4, attention_head_dim=32,
                                                          cross_attention_dim=128, num_layers=4,
                                                          caption_channels=32).eval()
    else:
        from diffusers import WanTransformer3DModel
        from tests.test_wan import tiny_components
        parts = tiny_components()
        parts["transformer"] = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32,
                                                     in_channels=16, out_channels=16, text_dim=32, freq_dim=256,
                                                     ffn_dim=256, num_layers=4, cross_attn_norm=True,
                                                     qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
    return parts


def tiny_components(model: str) -> dict:
    """The tests' tiny random components of `model`, with its WanPipeline settings (Wan 2.2) beside them."""
    if model == "ltx":
        from tests.test_ltx import tiny_components as make
    elif model == "wan":
        from tests.test_wan import tiny_components as make
    elif model == "ltx2":
        from tests.test_ltx2 import tiny_components as make
    elif model == "wan22-5b":
        from tests.test_wan22 import tiny_5b
        return {**tiny_5b(), "expand_timesteps": True}
    else:  # wan22-14b: the tests' boundary, so that both experts run within a few steps
        from tests.test_wan22 import BOUNDARY, tiny_14b
        return {**tiny_14b(), "boundary_ratio": BOUNDARY}
    return make()


def pipeline_and_backend(model: str, parts: dict, **opts):
    """diffusers' own pipeline over `parts`, and the engine's backend sharing the same modules.

    parts: the pipeline's init arguments (components, and WanPipeline's boundary_ratio / expand_timesteps);
    opts: the backend's (device, dtype, memory, max_sequence_length...).
    """
    import diffusers
    if model == "ltx":
        from engine.backends.ltx import LTXBackend as Backend
    elif model == "ltx2":
        from engine.backends.ltx2 import LTX2Backend as Backend
    else:
        from engine.backends.wan import WanBackend as Backend
    pipe = getattr(diffusers, {"ltx": "LTXPipeline", "ltx2": "LTX2Pipeline"}.get(model, "WanPipeline"))(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe, Backend.from_pipe(pipe, **opts)


def job_pair(model: str, pipe, backend, tl, settings, device="cpu", on_step=None):
    """-> (engine_job, pipeline_job, grid): the same text-to-video job, same noise, both ways.

    on_step: called with no arguments at the end of every denoising step on both sides.
    """
    from engine.api import made_sounds
    tl = tl.replace(seed=0) if tl.seed is None else tl  # both sides need the same noise: a fixed seed
    g = compile(tl, backend).grid
    noise = torch.randn((1, backend.spec.channels, g.latent_frames, g.latent_h, g.latent_w),
                        generator=torch.Generator().manual_seed(tl.seed)).to(device)  # the engine's noise for the seed
    extra = dict(frame_rate=int(g.fps), latents=backend.pack(noise)) if model.startswith("ltx") else dict(latents=noise)
    if model == "ltx2":
        # the same work on both sides: classifier-free guidance only (the engine's default; LTX2Pipeline's STG and
        # modality passes and its rescale off) and the sound decoded (Settings.audio: the engine's made_sounds)
        extra.update(frame_rate=float(g.fps), stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
                     audio_guidance_scale=settings.guidance, audio_stg_scale=0.0, audio_modality_scale=1.0,
                     audio_guidance_rescale=0.0, max_sequence_length=backend.max_sequence_length)
        settings = replace(settings, audio=True)

    if on_step is not None:
        extra["callback_on_step_end"] = lambda pipe, i, t, kw: on_step() or {}

    def engine_job():
        clips = generate(tl, backend, settings, callback=None if on_step is None else lambda d: on_step())
        return clips, made_sounds(tl, backend, settings)

    def pipe_job():
        return pipe(prompt=PROMPT, negative_prompt="", height=g.height, width=g.width, num_frames=g.n_frames,
                    num_inference_steps=settings.steps, guidance_scale=settings.guidance, output_type="np",
                    **extra).frames
    return engine_job, pipe_job, g


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


_libc = ctypes.CDLL("libc.so.6")


def measure(fn) -> tuple[float, float]:
    """-> (seconds, peak MiB above the resident level at the start) of one call."""
    _libc.malloc_trim(0)                       # freed heap of earlier runs does not hide this run's peak
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                          # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return seconds, (_status_kib("VmHWM") - base) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("ltx", "wan"), default="ltx")
    ap.add_argument("--size", choices=("tiny", "small"), default="small")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--resolution", type=int, default=64)
    args = ap.parse_args()

    parts = small_components(args.model) if args.size == "small" else tiny_components(args.model)
    pipe, backend = pipeline_and_backend(args.model, parts)
    tl = ops.t2v(PROMPT, duration_s=args.duration, fps=8, aspect="1:1", resolution=args.resolution)
    settings = Settings(steps=args.steps, guidance=args.guidance)
    engine_job, pipe_job, g = job_pair(args.model, pipe, backend, tl, settings)

    print(f"{args.size} {args.model}, {g.width}x{g.height} px x {g.n_frames} frames -> {g.latent_frames}x{g.latent_h}x"
          f"{g.latent_w} latents, {args.steps} steps, guidance {args.guidance}, {torch.get_num_threads()} threads")
    with torch.no_grad():
        engine_job(), pipe_job()              # warm-up: first-call allocations and lazy imports
        runs = {"engine": [], "pipeline": []}
        for _ in range(args.repeats):         # interleaved, so drift hits both alike
            runs["engine"].append(measure(engine_job))
            runs["pipeline"].append(measure(pipe_job))
    for k, v in runs.items():
        print(f"{k:>9} runs: " + ", ".join(f"{s:.2f} s / {m:.1f} MiB" for s, m in v))
    med = {k: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}
    for k, (s, m) in med.items():
        print(f"{k:>9}: {s:.3f} s, peak +{m:.1f} MiB (median of {args.repeats})")
    t_ratio = med["engine"][0] / med["pipeline"][0]
    m_ratio = med["engine"][1] / max(med["pipeline"][1], 1e-9)
    print(f"wall time ratio engine/pipeline {t_ratio:.3f} (goal <= 1.03: {'met' if t_ratio <= 1.03 else 'not met'})")
    print(f"peak memory ratio engine/pipeline {m_ratio:.3f} (goal <= 1.0: {'met' if m_ratio <= 1.0 else 'not met'})")


if __name__ == "__main__":
    main()
