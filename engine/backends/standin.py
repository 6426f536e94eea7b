"""The stand-in backend: the reference backend whose every denoising step also waits a fixed time, as a step
on a GPU would, while leaving the CPU free. It measures orchestration (bench/scale.py: how many jobs a
studio and its workers get through) on a machine whose few cores cannot show compute scaling. Registered
as "standin" for benchmarks and tests; never offered in the page (registry.configured() leaves it out).
"""
from __future__ import annotations

import time

import torch

from engine.backends.reference import ReferenceBackend


class StandInBackend(ReferenceBackend):
    name = "standin"

    def __init__(self, step_s: float = 0.25, **opts):
        super().__init__(**opts)
        self.step_s = float(step_s)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F), text (B, L, D), gate (B, F, L) -> (B, C, F, h, w), after step_s seconds."""
        time.sleep(self.step_s)  # the device computing: this process waits, the CPU serves the others
        return super().denoise(x, t, text, gate)
