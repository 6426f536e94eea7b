"""Engine overhead: the full engine (injection, gating, CFG) vs a bare loop of the same denoiser calls.

Prints the ratio (median of several interleaved runs; goal <= 1.03) and the plan compile
time of a 60 s, 24 fps timeline with 50 cards (goal < 50 ms). Ratios are measured in one
run because these machines are noisy; nothing here is a pass/fail test.

    python bench/overhead.py [--steps 20] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import sampler  # noqa: E402
from engine.backends.reference import ReferenceBackend  # noqa: E402
from engine.plan import compile  # noqa: E402
from engine.timeline import TextCard, Timeline  # noqa: E402


def bare_loop(backend, plan, sigmas, guidance, noise):
    """What a hand-written loop would do: the same batched CFG call per step, nothing else."""
    cond = sampler.batch_conditioning(plan, noise.shape[0], True, "cpu", torch.float32)
    x = noise.clone()
    B, F_ = x.shape[0], x.shape[2]
    for i in range(len(sigmas) - 1):
        t = torch.full((2 * B, F_), float(sigmas[i]))
        v = backend.denoise(torch.cat([x, x]), t, cond.text, cond.gate)
        v_c, v_u = v.chunk(2)
        x = x + (sigmas[i + 1] - sigmas[i]) * (v_u + guidance * (v_c - v_u))
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    backend = ReferenceBackend(width=128, depth=4)
    tl = Timeline(duration_s=2, fps=12, resolution=32, cards=[TextCard(0, 1, "a red ball"), TextCard(1, 2, "a blue box")])
    plan = compile(tl, backend)
    plan.start_level[:3] = 0.0           # injection and partial noise exercised
    plan.start_level[3:6] = 0.5
    sigmas = sampler.schedule(args.steps)
    noise = torch.randn(1, *plan.known.shape)

    engine_t, bare_t = [], []
    with torch.no_grad():
        for _ in range(args.repeats):    # interleaved, so drift hits both alike
            t0 = time.perf_counter()
            sampler.sample(backend.denoise, plan, sigmas, 4.0, noise=noise)
            engine_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare_loop(backend, plan, sigmas, 4.0, noise)
            bare_t.append(time.perf_counter() - t0)
    ratio = statistics.median(e / b for e, b in zip(engine_t, bare_t))
    print(f"grid {plan.grid.latent_frames}x{plan.grid.latent_h}x{plan.grid.latent_w}, {args.steps} steps, CFG")
    print(f"engine {statistics.median(engine_t) * 1e3:.1f} ms  bare {statistics.median(bare_t) * 1e3:.1f} ms  "
          f"ratio {ratio:.3f} (goal <= 1.03)")

    cards = [TextCard(i * 1.2, i * 1.2 + 1.2, f"card {i} a small red circle moving left") for i in range(50)]
    long_tl = Timeline(duration_s=60, fps=24, resolution=64, crossfade_s=0.3, cards=cards)
    compile(long_tl, backend)            # warm
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        compile(long_tl, backend)
        times.append(time.perf_counter() - t0)
    print(f"plan compile, 60 s at 24 fps, 50 text cards: {statistics.median(times) * 1e3:.1f} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
