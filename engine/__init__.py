"""cinepatch's engine: timelines, plans, the sampler and the backends (see DESIGN.md)."""
import os

# On a CPU shared with other work, OpenMP's default busy-wait makes torch's threads fight: one DiT
# step of the embedded model took 1.70 s with 2 threads against 0.21 s with waits that sleep (load 9
# on 2 cores). It is read once, when torch loads, so it is set here, before any engine module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
