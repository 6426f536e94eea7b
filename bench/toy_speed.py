"""Embedded-model speed: 2 s of 64 px video at 8 fps, default steps and guidance, in-process after loading.

Goal (issue 3): <= 2 s wall on 2 CPU cores, i.e. a real-time factor >= 1, and peak RSS <= 2 GB.
Prints the median of several runs (this machine is noisy) and the real-time factor.

    python bench/toy_speed.py [--runs 5] [--aspect 16:9]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--aspect", default="16:9")
    a = ap.parse_args()
    import torch

    from engine import ops
    from engine.api import Settings, generate
    from engine.backends.registry import load_backend
    t0 = time.perf_counter()
    backend = load_backend("toy")
    load_s = time.perf_counter() - t0
    tl = ops.t2v("a small red circle moving left on a black background", 2.0, fps=8, resolution=64, aspect=a.aspect)
    settings = Settings()
    generate(tl, backend, settings)  # warm-up: first-call allocations and text-encoder caches
    times = []
    for k in range(a.runs):
        t = time.perf_counter()
        clip = generate(tl.replace(seed=k), backend, settings)[0]
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"toy backend, {clip.shape[2]}x{clip.shape[1]}, {len(clip)} frames (2 s at 8 fps), {settings.steps} steps, "
          f"guidance {settings.guidance}, {torch.get_num_threads()} threads")
    print(f"load {load_s:.2f} s; generate median {med:.2f} s of {a.runs} (min {min(times):.2f}, max {max(times):.2f})")
    print(f"real-time factor {2.0 / med:.2f}x (goal >= 1.0: {'met' if med <= 2.0 else 'not met'})")
    print(f"peak RSS {rss_gb:.2f} GB (goal <= 2 GB: {'met' if rss_gb <= 2 else 'not met'})")


if __name__ == "__main__":
    main()
