"""A small causal video autoencoder: 8x spatial, 2x temporal with a causal first frame.

Pixel frames are packed in pairs, the first frame paired with itself (so N = 1 + 2k frames
give 1 + k latent frames, as LTX and Wan map time), and each pair goes through a 2-D
convolutional encoder. A latent frame therefore depends only on its own pixel frames:
encoding a window of a clip gives exactly the latents of that window in the whole clip,
which makes the plan's per-card encoding exact. Latents are normalised per channel
(`shift`, `scale` measured after training) so the diffusion model sees unit variance.

The decoder sees `decoder_context` latent frames on each side (edges repeated), as the 3-D
convolutions of LTX's and Wan's decoders do: a latent alone says where things are over its two
frames, its neighbours say which way they go, so the two frames it decodes can differ. A
decoder without that context (the first shipped one) drew both frames alike: motion that
stepped every other frame, which the judge reads as half speed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from einops import rearrange


@dataclass
class VAEConfig:
    latent_channels: int = 16
    channels: tuple[int, ...] = (32, 64, 128, 128)   # width at 1x, 2x, 4x, 8x downsampling
    temporal_factor: int = 2
    decoder_context: int = 1                          # latent frames each side the decoder sees (0 = its own only)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                 nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.net(x)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch = cfg.channels
        layers = [nn.Conv2d(3 * cfg.temporal_factor, ch[0], 3, padding=1)]
        for a, b in zip(ch, ch[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), ResBlock(b)]
        layers += [ResBlock(ch[-1]), nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], cfg.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch = cfg.channels[::-1]
        layers = [nn.Conv2d(cfg.latent_channels * (2 * cfg.decoder_context + 1), ch[0], 3, padding=1), ResBlock(ch[0])]
        for i, (a, b) in enumerate(zip(ch, ch[1:])):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1)]
            layers += [ResBlock(b)] if i < len(ch) - 2 else []   # no block at full size: most of the cost, little gain
        layers += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 3 * cfg.temporal_factor, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class VideoAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("shift", torch.zeros(cfg.latent_channels))
        self.register_buffer("scale", torch.ones(cfg.latent_channels))

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) with N = 1 + k*tf -> (B*F, 3*tf, H, W), the first frame paired with itself."""
        tf = self.cfg.temporal_factor
        assert (x.shape[2] - 1) % tf == 0, f"{x.shape[2]} frames is not 1 + k*{tf}"
        x = torch.cat([x[:, :, :1].expand(-1, -1, tf - 1, -1, -1), x], dim=2)
        return rearrange(x, "b c (f t) h w -> (b f) (t c) h w", t=tf)

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) in [-1, 1] -> (B, C, F, h, w) before normalisation."""
        B = x.shape[0]
        z = self.encoder(self.pack(x))                                     # (B*F, C, h, w)
        return rearrange(z, "(b f) c h w -> b c f h w", b=B)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) in [-1, 1] -> normalised latents (B, C, F, h, w)."""
        z = self.encode_raw(x)
        return (z - self.shift[:, None, None, None]) / self.scale[:, None, None, None]

    def with_context(self, z: torch.Tensor, shots: tuple[int, ...] = ()) -> torch.Tensor:
        """(B, C, F, h, w) -> (B, (2k+1)*C, F, h, w): each latent frame with its k neighbours each side
        (edges repeated), neighbour-major so channels [k*C, (k+1)*C) are the frame itself. shots: latent frames
        that start a new shot (a storyboard's cut): no frame's context reaches across one, as at the clip's ends."""
        k, F_ = self.cfg.decoder_context, z.shape[2]
        if not k:
            return z
        bounds = torch.tensor([0, *sorted(shots), F_])
        shot = torch.bucketize(torch.arange(F_), bounds[1:], right=True)                # (F,) each frame's shot
        lo, hi = bounds[shot], bounds[shot + 1] - 1
        idx = (torch.arange(F_)[:, None] + torch.arange(-k, k + 1)[None])                # (F, 2k+1)
        idx = torch.maximum(torch.minimum(idx, hi[:, None]), lo[:, None]).to(z.device)
        return rearrange(z[:, :, idx], "b c f k h w -> b (k c) f h w")

    def decode_raw(self, z: torch.Tensor, shots: tuple[int, ...] = ()) -> torch.Tensor:
        """(B, C, F, h, w) raw latents -> (B, 3, N, H, W), N = 1 + (F-1)*tf; shots: as with_context."""
        B, tf = z.shape[0], self.cfg.temporal_factor
        y = self.decoder(rearrange(self.with_context(z, shots), "b c f h w -> (b f) c h w"))   # (B*F, 3*tf, H, W)
        y = rearrange(y, "(b f) (t c) h w -> b c (f t) h w", b=B, t=tf)
        return y[:, :, tf - 1:]                                              # drop the first frame's copies

    def raw(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) -> the raw latents (B, C, F, h, w) the decoder reads."""
        return z * self.scale[:, None, None, None] + self.shift[:, None, None, None]

    def decode(self, z: torch.Tensor, shots: tuple[int, ...] = ()) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) -> (B, 3, N, H, W) in [-1, 1]; shots: as with_context."""
        return self.decode_raw(self.raw(z), shots).clamp(-1, 1)


def widen_decoder(state: dict, cfg: VAEConfig) -> dict:
    """A state dict of a decoder with less context -> the same model with cfg's context: the new
    neighbour inputs start at zero weight, so the widened decoder first decodes exactly as before."""
    key = "decoder.net.0.weight"
    w = state[key]                                                           # (out, C*(2j+1), 3, 3)
    C, k = cfg.latent_channels, cfg.decoder_context
    j = (w.shape[1] // C - 1) // 2
    if j == k:
        return state
    assert j < k, f"cannot narrow a decoder's context from {j} to {k}"
    new = w.new_zeros(w.shape[0], C * (2 * k + 1), *w.shape[2:])
    new[:, (k - j) * C:(k + j + 1) * C] = w
    return {**state, key: new}
