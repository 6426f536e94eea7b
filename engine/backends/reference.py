"""The reference backend: real code paths, no trained weights, instant on a CPU.

It exists so the engine can be exercised end to end (tests, benchmarks, `--backend
reference`) without any model: a pooling "VAE" with configurable factors (causal first
frame included), a word-hash text encoder, and a small randomly initialised DiT of the
same class as the embedded model, so gating and per-frame timesteps run through real
attention. Its videos are noise-like; their geometry, timing and injected frames are real.
"""
from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from engine.backends.base import LatentSpec
from engine.backends.toy.model import DiT, DiTConfig


class ReferenceBackend:
    name = "reference"

    def __init__(self, temporal_factor: int = 2, spatial_factor: int = 4, causal_first: bool = True,
                 per_token_timestep: bool = True, text_dim: int = 32, width: int = 32, depth: int = 2,
                 seed: int = 0, device: str = "cpu"):
        self.spec = LatentSpec(channels=3, temporal_factor=temporal_factor, spatial_factor=spatial_factor,
                               causal_first=causal_first, size_multiple=spatial_factor,
                               per_token_timestep=per_token_timestep)
        self.text_dim = text_dim
        self.device = torch.device(device)
        torch.manual_seed(seed)
        cfg = DiTConfig(in_channels=3, patch=1, width=width, depth=depth, heads=2, text_dim=text_dim)
        self.model = DiT(cfg).to(self.device).eval()
        # Random adaLN gates so every block really contributes (the zero init is for training).
        with torch.no_grad():
            for m in self.model.modules():
                if isinstance(m, torch.nn.Linear) and m.weight.abs().sum() == 0:
                    torch.nn.init.normal_(m.weight, std=0.02)

    # -- text: each word a fixed pseudo-random vector, so different words differ
    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for p in prompts:
            words = ["<s>"] + p.lower().split()
            vecs = []
            for w in words:
                g = torch.Generator().manual_seed(zlib.crc32(w.encode("utf-8", "surrogatepass")))
                vecs.append(torch.randn(self.text_dim, generator=g))
            tokens = torch.stack(vecs).to(self.device)                     # (L, D)
            out.append((tokens, torch.ones(len(words), dtype=torch.bool, device=self.device)))
        return out

    # -- video: average pooling in, nearest repetition out
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) -> (B, 3, F, H/s, W/s)."""
        s, tf = self.spec.spatial_factor, self.spec.temporal_factor
        x = pixels.to(self.device, torch.float32)
        if self.spec.causal_first:
            first = F.avg_pool3d(x[:, :, :1], (1, s, s))
            rest = F.avg_pool3d(x[:, :, 1:], (tf, s, s)) if x.shape[2] > 1 else first[:, :, :0]
            return torch.cat([first, rest], dim=2)
        return F.avg_pool3d(x, (tf, s, s))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, h, w) -> (B, 3, N, h*s, w*s)."""
        s, tf = self.spec.spatial_factor, self.spec.temporal_factor
        z = latents.float().repeat_interleave(s, dim=3).repeat_interleave(s, dim=4)
        if self.spec.causal_first:
            return torch.cat([z[:, :, :1], z[:, :, 1:].repeat_interleave(tf, dim=2)], dim=2)
        return z.repeat_interleave(tf, dim=2)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F), text (B, L, D), gate (B, F, L) -> (B, C, F, h, w)."""
        return self.model(x, t, text, gate)

    def shift(self, n_tokens: int) -> float:
        return 1.0
