"""The one shared denoiser: what every backend declares and provides.

A backend owns its models and adapts them to four calls the engine makes:
`encode_text`, `encode_video`, `decode` and `denoise(x, t, text, gate) -> velocity`.
Its `LatentSpec` says how pixels map onto the latent grid, which the plan compiler uses
to place media and text on latent frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class LatentSpec:
    channels: int              # latent channels C
    temporal_factor: int       # pixel frames per latent frame
    spatial_factor: int        # pixels per latent cell side
    causal_first: bool = True  # latent frame 0 encodes pixel frame 0 alone (LTX, Wan)
    size_multiple: int = 0     # pixel sides must divide by this (0: spatial_factor)
    per_token_timestep: bool = True  # the denoiser takes t per latent frame (else one t)
    min_side: int = 16
    max_side: int = 2160
    cell_bytes: int = 0        # peak memory per latent cell of one sampling run, measured (0: not known)

    @property
    def multiple(self) -> int:
        return self.size_multiple or self.spatial_factor

    # -- time: pixel frames <-> latent frames
    def snap_frames(self, n: int) -> int:
        """The smallest pixel frame count >= n the VAE accepts (causal: 1 + k*tf; else k*tf).

        Rounding up lets the engine trim the decoded clip back to exactly the n frames asked for.
        """
        tf = self.temporal_factor
        if self.causal_first:
            return 1 + tf * max(0, -(-(n - 1) // tf))
        return tf * max(1, -(-n // tf))

    def latent_frames(self, n: int) -> int:
        """Latent frames for a valid pixel count n."""
        assert n == self.snap_frames(n), f"{n} pixel frames is not a valid count for this VAE"
        return 1 + (n - 1) // self.temporal_factor if self.causal_first else n // self.temporal_factor

    def latent_index(self, n: int) -> int:
        """The latent frame that holds pixel frame n."""
        if self.causal_first:
            return 0 if n == 0 else 1 + (n - 1) // self.temporal_factor
        return n // self.temporal_factor

    def pixel_range(self, f: int) -> tuple[int, int]:
        """The pixel frames [a, b) that latent frame f encodes."""
        tf = self.temporal_factor
        if self.causal_first:
            return (0, 1) if f == 0 else (1 + (f - 1) * tf, 1 + f * tf)
        return f * tf, (f + 1) * tf

    # -- space
    def frame_size(self, aspect: tuple[int, int], short_side: int) -> tuple[int, int]:
        """(width, height) for an aspect W:H with the given short side, both snapped to `multiple`."""
        m = self.multiple
        snap = lambda v: max(m, int(round(v / m)) * m)  # noqa: E731
        aw, ah = aspect
        longest_short = int(self.max_side * min(aw, ah) / max(aw, ah)) // m * m  # the long side stays <= max_side
        short = max(m, min(max(snap(short_side), snap(self.min_side)), longest_short))
        if aw >= ah:
            return snap(short * aw / ah), short
        return short, snap(short * ah / aw)


@runtime_checkable
class Backend(Protocol):
    name: str
    spec: LatentSpec

    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each prompt -> (tokens (L, D), mask (L,) bool); "" is the empty prompt (at least one token)."""

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) in [-1, 1], N a valid count -> latents (B, C, F, h, w)."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) -> (B, 3, N, H, W) in [-1, 1]."""

    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F) noise level per latent frame, text (B, L, D), gate (B, F, L) -> velocity (B, C, F, h, w)."""

    def shift(self, n_tokens: int) -> float:
        """Schedule shift for a grid of n_tokens latent cells (bigger grids want more time at high noise)."""
