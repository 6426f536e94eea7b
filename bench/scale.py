"""Scaling of the studio's job queue on Ray workers (issue 23), in three parts:

1. Orchestration: throughput (jobs/min) of a fixed job mix with 1, 2, 4 and 8 Ray workers running the stand-in
   backend, whose every denoising step waits a fixed time as a GPU step would (two cores cannot show compute
   scaling; this shows what the studio, Ray and the library add). One line per count, as a ratio to one worker
   (goal: >= 0.9 x N).
2. The embedded model at 1 and 2 CPU workers (real compute on this machine's cores).
3. A simulation of a 64-GPU cluster: Poisson job arrivals, job sizes from the real models' measured s/step
   (bench/RESULTS.md, H100), the studio's costs per event and per SQLite write measured here; where the single
   SQLite writer (and the one studio process that handles every event) becomes the bottleneck, and what then.

    python bench/scale.py                 # about 3 minutes on 2 cores
    python bench/scale.py --jobs 8 --counts 1,2 --toy-jobs 0 --sim-minutes 5     # quicker
"""
from __future__ import annotations

import argparse
import functools
import heapq
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Real models' seconds per denoising step on one H100 (bench/RESULTS.md) and the seconds of a job outside its
# steps (text encoding, VAE decode, mp4), with the steps a job of theirs takes here.
MODELS = {"ltx 768x512x121": {"s_step": 0.178, "outside_s": 4.0, "steps": 30, "share": 0.7},
          "wan 832x480x81": {"s_step": 1.284, "outside_s": 8.0, "steps": 30, "share": 0.3}}


def mix(n: int, steps: int) -> list[dict]:
    """The fixed job mix: half 0.5 s, half 1 s clips at 32 px, each its own prompt and seed."""
    return [{"prompt": f"a red circle moving left, take {k}", "duration_s": 0.5 if k % 2 else 1.0,
             "resolution": 32, "steps": steps, "seed": k} for k in range(n)]


def throughput(name: str, workers: int, requests: list[dict], loader=None) -> tuple[float, float]:
    """-> (jobs/min, seconds per job outside its steps) of `requests` on `workers` fresh actors, after each actor
    has loaded its backend (a warm-up job each: loading is paid once per worker, not measured)."""
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.workers_ray import RayPool
    pool = RayPool(name, workers=workers, loader=loader)
    try:
        while pool.slots() < workers:  # every actor placed and started
            time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="cinepatch-scale-") as home:
            jobs = Jobs(Library(home), name, workers=pool)
            for job in [jobs.submit("generate", requests[k % 2]) for k in range(2 * workers)]:
                jobs.wait(job)  # each actor has run one job of each length
            t0 = time.perf_counter()
            ids = [jobs.submit("generate", r) for r in requests]
            rows = [jobs.wait(j) for j in ids]
            wall = time.perf_counter() - t0
            assert all(r["state"] == "done" for r in rows), [r["error"] for r in rows if r["state"] != "done"]
            busy = statistics.mean(r["finished"] - r["started"] for r in rows)
    finally:
        pool.close()
    return len(requests) / wall * 60, busy


def orchestration(a) -> float:
    """Part 1: the stand-in backend at each worker count -> seconds per job outside its steps (1 worker)."""
    from engine.backends.registry import load_backend
    loader = functools.partial(load_backend, "standin", step_s=a.step_s)
    print(f"1. stand-in backend: {a.jobs} jobs of {a.steps} steps, {a.step_s} s a step "
          f"({a.steps * a.step_s:.1f} s of 'GPU' a job)")
    base, outside = None, 0.0
    for n in a.counts:
        rate, busy = throughput("standin", n, mix(a.jobs, a.steps), loader)
        base = base or rate
        outside = outside or busy - a.steps * a.step_s
        print(f"   {n} workers: {rate:.1f} jobs/min, ratio {rate / base:.2f} (goal >= {0.9 * n:.1f})")
    return outside


def embedded(a) -> None:
    """Part 2: the embedded model, real compute, at 1 and 2 CPU workers."""
    print(f"2. embedded model: {a.toy_jobs} jobs of {a.toy_steps} steps on this machine's cores")
    base = None
    for n in (1, 2):
        rate, _ = throughput("toy", n, mix(a.toy_jobs, a.toy_steps))
        base = base or rate
        print(f"   {n} workers: {rate:.2f} jobs/min, ratio {rate / base:.2f}")


def studio_costs() -> dict:
    """Seconds the studio spends, on this machine, on what every job makes it do: one SQLite write (a step's
    progress), a preview file, and attaching a 2 MB video (stage + the finishing transaction)."""
    from studio.library import Library
    from studio.workers import Encoded
    with tempfile.TemporaryDirectory(prefix="cinepatch-costs-") as home:
        lib = Library(home)
        job = lib.add_job("generate", {}, "x", "standin")
        t = time.perf_counter()
        for k in range(200):
            lib.update_job(job, step=k)
        write = (time.perf_counter() - t) / 200
        t = time.perf_counter()
        for k in range(200):
            out = lib.preview_file(job).with_suffix(".part")
            out.write_bytes(b"\xff" * 3000)
            out.replace(lib.preview_file(job))
        preview = (time.perf_counter() - t) / 200
        meta = {"storyboard": {}, "settings": {}, "backend": "standin", "seed": 1}
        clip = Encoded(b"\0" * 2_000_000, b"\0" * 20_000, 121, 768, 512)
        t = time.perf_counter()
        for _ in range(10):
            j = lib.add_job("generate", {}, "x", "standin")
            lib.transition(j, "queued", "running")
            lib.finish_job(j, [lib.stage_encoded("generate", "x", clip, 24.0, meta, {})])
        finish = (time.perf_counter() - t) / 10
    return {"write": write, "preview": preview, "finish": finish}


def ray_event_cost(n: int = 400) -> float:
    """Seconds for the studio to take one streamed event from an actor (ray.get of a small dict)."""
    import ray

    @ray.remote(num_cpus=1)
    class Emitter:
        def stream(self, n):
            for k in range(n):
                yield {"step": k}
    e = Emitter.remote()
    list(ray.get(r) for r in e.stream.options(num_returns="streaming").remote(10))  # started, warm
    t = time.perf_counter()
    for ref in e.stream.options(num_returns="streaming").remote(n):
        ray.get(ref)
    cost = (time.perf_counter() - t) / n
    ray.kill(e)
    return cost


def simulate(rate_per_min: float, costs: dict, models: dict, gpus: int = 64, minutes: float = 10,
             every_s: float = 0.0, seed: int = 0) -> dict:
    """A 64-GPU cluster fed Poisson arrivals of the `models` mix (as MODELS), as discrete events in time order.
    The studio is one server (one process, one SQLite writer) handling, first come first served: a write when a
    job is queued and when it starts, one per step (progress; with every_s > 0 at most one per every_s seconds
    and the last), a preview every second step, and the finish. A GPU is free again once the studio has handled
    its job's last step (as in studio/workers_ray.py). -> completed jobs/min, GPU and studio busy fractions,
    mean wait for a GPU."""
    rng, names, end = random.Random(seed), list(models), minutes * 60
    clock = {"studio": 0.0, "busy": 0.0, "gpu_s": 0.0, "done": 0, "free": gpus}
    events, queue, waits, seq = [], [], [], iter(range(10**9))

    def studio(at: float, cost: float) -> float:     # FIFO single server (Lindley): requests come in time order
        clock["studio"] = max(clock["studio"], at) + cost
        clock["busy"] += cost
        return clock["studio"]

    def push(t: float, kind: str, job: dict):
        heapq.heappush(events, (t, next(seq), kind, job))
    t = 0.0
    while (t := t + rng.expovariate(rate_per_min / 60)) < end:
        push(t, "arrive", dict(models[rng.choices(names, [models[n]["share"] for n in names])[0]]))
    while events:
        t, _, kind, job = heapq.heappop(events)
        if kind == "arrive":
            push(studio(t, costs["write"]), "queued", job)
        elif kind == "queued":
            job["queued"] = t
            queue.append(job)
        elif kind == "step":
            k = job["k"] = job.get("k", 0) + 1
            last = k == job["steps"]
            if not every_s or last or t - job["handled"] >= every_s:
                job["handled"] = studio(t, costs["event"] + costs["write"] + (costs["preview"] if k % 2 else 0))
            push(t + (job["outside_s"] / 2 if last else job["s_step"]), "gpu_end" if last else "step", job)
        elif kind == "gpu_end":
            clock["gpu_s"] += min(t, end) - min(job["start"], end)
            push(max(t, job["handled"]), "release", job)
        elif kind == "release":
            clock["done"] += studio(t, costs["finish"]) < end
            clock["free"] += 1
        while clock["free"] and queue:   # a free GPU takes the oldest queued job
            nxt = queue.pop(0)
            clock["free"] -= 1
            nxt["start"] = nxt["handled"] = studio(t, costs["write"])
            waits.append(nxt["start"] - nxt["queued"])
            push(nxt["start"] + nxt["outside_s"] / 2 + nxt["s_step"], "step", nxt)
    return {"jobs_min": clock["done"] / minutes, "gpu": clock["gpu_s"] / (gpus * end),
            "studio": min(1.0, clock["busy"] / end), "wait_s": statistics.mean(waits) if waits else 0.0}


def simulation(a, outside_s: float) -> None:
    costs = studio_costs()
    costs["event"] = ray_event_cost()
    print(f"3. simulated 64-GPU cluster, {a.sim_minutes:g} min; mix: " +
          ", ".join(f"{int(m['share'] * 100)}% {n} ({m['steps']} x {m['s_step']} s/step)" for n, m in MODELS.items()))
    print(f"   studio costs measured here: SQLite write {costs['write'] * 1e3:.2f} ms, Ray event "
          f"{costs['event'] * 1e3:.2f} ms, preview file {costs['preview'] * 1e3:.2f} ms, attach a 2 MB video "
          f"{costs['finish'] * 1e3:.1f} ms; a stand-in job's time outside its steps {outside_s:.2f} s")
    print(f"   the GPUs' capacity for this mix: {capacity(MODELS):.0f} jobs/min")
    for scale, label in ((1.0, "real steps"), (0.1, "steps 10x faster (a distilled model, 4-8 steps)")):
        models = {n: dict(m, s_step=m["s_step"] * scale) for n, m in MODELS.items()}
        print(f"   {label}:")
        for every in (0.0, 1.0):
            how = "a write every step" if not every else "progress written at most once a second"
            for load in (0.5, 0.9, 1.2):
                r = simulate(load * capacity(models), costs, models, minutes=a.sim_minutes, every_s=every)
                print(f"     {load * capacity(models):6.0f} jobs/min offered ({load:.1f} x capacity), {how}: "
                      f"{r['jobs_min']:6.0f} made/min, GPUs {r['gpu']:.0%} busy, studio {r['studio']:.0%} busy, "
                      f"wait {r['wait_s']:.1f} s")


def capacity(models: dict, gpus: int = 64) -> float:
    """Jobs/min the GPUs could make of this mix if nothing else held them up."""
    return gpus * 60 / sum(m["share"] * (m["steps"] * m["s_step"] + m["outside_s"]) for m in models.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16, help="jobs in the stand-in mix")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--step-s", type=float, default=0.25, help="the stand-in's wait a step")
    ap.add_argument("--counts", default="1,2,4,8", help="worker counts")
    ap.add_argument("--toy-jobs", type=int, default=4, help="jobs of the embedded model (0: skip part 2)")
    ap.add_argument("--toy-steps", type=int, default=8)
    ap.add_argument("--sim-minutes", type=float, default=10)
    a = ap.parse_args()
    a.counts = [int(c) for c in a.counts.split(",")]
    import ray
    ray.init(num_cpus=max(a.counts), object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    outside = orchestration(a)
    if a.toy_jobs:
        embedded(a)
    simulation(a, outside)
    print(f"({time.perf_counter() - t0:.0f} s)")
    ray.shutdown()


if __name__ == "__main__":
    main()
