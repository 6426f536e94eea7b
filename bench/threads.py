"""OpenMP's wait policy for the embedded DiT on this CPU: one forward pass (a 2 s, 64 px job's
step with guidance), in fresh processes, busy-wait (ACTIVE, OpenMP's default) against sleeping
waits (PASSIVE, what engine/__init__.py sets). Run it alone and beside other work; it prints the
ratio ACTIVE / PASSIVE measured in this run, per thread count.

    python bench/threads.py
"""
import os
import subprocess
import sys

CHILD = """
import time, torch
torch.set_num_threads({threads})
from engine.backends.toy.backend import ASSETS, load_dit
dit = load_dit(ASSETS / "toy_dit.safetensors")
x, t = torch.randn(2, 16, 5, 4, 8), torch.full((2, 5), 0.5)
txt, gate = torch.randn(2, 20, 384), torch.ones(2, 5, 20)
with torch.no_grad():
    dit(x, t, txt, gate)
    s = time.perf_counter()
    for _ in range(10):
        dit(x, t, txt, gate)
print((time.perf_counter() - s) / 10)
"""


def forward_s(policy: str, threads: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    out = subprocess.run([sys.executable, "-c", CHILD.format(threads=threads)], env=env, check=True,
                         capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for threads in (1, os.cpu_count()):
        active, passive = forward_s("ACTIVE", threads), forward_s("PASSIVE", threads)
        print(f"{threads} thread(s): ACTIVE {active:.3f} s, PASSIVE {passive:.3f} s per forward, ratio {active / passive:.2f}")
