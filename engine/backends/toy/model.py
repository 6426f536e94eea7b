"""A spacetime-patch diffusion transformer (DiT) over video latents.

Tokens are `1 x p x p` patches of the latent, ordered frame-major, so every token belongs
to exactly one latent frame: the timestep is given per frame (`t: (B, F)`) and the
adaLN modulation and the cross-attention gate are applied per frame. Positions are 3-D
rotary embeddings over (frame, row, column), so any aspect and duration is a valid input.
The model predicts the rectified-flow velocity `eps - x0`; it never imports the sampler.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from engine.attention import gate_bias, gated_attention


@dataclass
class DiTConfig:
    in_channels: int = 8      # latent channels of the VAE
    patch: int = 2            # latent cells per token side (time patch is always 1: one timestep per frame)
    width: int = 256
    depth: int = 8
    heads: int = 4
    text_dim: int = 384       # all-MiniLM-L6-v2 token width
    mlp_ratio: float = 4.0
    rope_theta: float = 256.0  # positions are small integers; a small base keeps every band useful
    pooled_text: bool = False  # add a gated mean of the text per frame to adaLN (a short path for the caption)
    layout: int = 0            # layout channels added to the tokens (engine/backends/toy/layout.py); 0 = none


def rope_frequencies(F_: int, H: int, W: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (F*H*W, head_dim/2) for 3-D RoPE: the head's pairs split over frame, row, column."""
    pairs = head_dim // 2
    split = [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]           # frame gets the remainder
    grids = torch.meshgrid(torch.arange(F_, device=device), torch.arange(H, device=device),
                           torch.arange(W, device=device), indexing="ij")
    angles = []
    for n, pos in zip(split, grids):
        freqs = theta ** (-torch.arange(n, device=device, dtype=torch.float32) / max(n, 1))
        angles.append(pos.reshape(-1, 1).float() * freqs)                 # (S, n)
    angles = torch.cat(angles, dim=-1)                                    # (S, pairs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, h, S, d) rotated pairwise by the tables (S, d/2) -> (B, h, S, d)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)                  # (B, h, S, d/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t (...) in [0, 1] -> (..., dim) sinusoidal features of 1000 t."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000 * t.float()[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.q_norm = nn.RMSNorm(cfg.width // cfg.heads)   # qk-norm keeps logits tame in bf16
        self.k_norm = nn.RMSNorm(cfg.width // cfg.heads)
        self.out = nn.Linear(cfg.width, cfg.width)

    def forward(self, x, rope):
        q, k, v = rearrange(self.qkv(x), "b s (three h d) -> three b h s d", three=3, h=self.heads)  # (B, h, S, d)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        y = F.scaled_dot_product_attention(q, k, v)                                               # (B, h, S, d)
        return self.out(rearrange(y, "b h s d -> b s (h d)"))                                      # (B, S, D)


class CrossAttention(nn.Module):
    """Video tokens attend to text tokens through the plan's gate (engine/attention.py)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q = nn.Linear(cfg.width, cfg.width)
        self.kv = nn.Linear(cfg.width, 2 * cfg.width)
        self.q_norm = nn.RMSNorm(cfg.width // cfg.heads)
        self.k_norm = nn.RMSNorm(cfg.width // cfg.heads)
        self.out = nn.Linear(cfg.width, cfg.width)

    def forward(self, x, text, bias):
        q = rearrange(self.q(x), "b s (h d) -> b h s d", h=self.heads)                        # (B, h, S, d)
        k, v = rearrange(self.kv(text), "b l (two h d) -> two b h l d", two=2, h=self.heads)   # (B, h, L, d)
        y = gated_attention(self.q_norm(q), self.k_norm(k), v, bias)                           # (B, h, S, d)
        return self.out(rearrange(y, "b h s d -> b s (h d)"))                                   # (B, S, D)


def pooled_text(txt: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """txt (B, L, D), gate (B, F, L) -> (B, F, D): each frame's gate-weighted mean of the tokens it may
    see, so a storyboard segment's caption reaches only its own frames, as in the cross-attention."""
    w = gate.float()
    return (w @ txt.float()).to(txt.dtype) / w.sum(-1, keepdim=True).clamp_min(1e-6).to(txt.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, frames: int) -> torch.Tensor:
    """x (B, S, D) with per-frame shift/scale (B, F, D) -> (B, S, D); tokens are frame-major."""
    x = x.unflatten(1, (frames, -1))                                        # (B, F, S_f, D)
    return (x * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2)


def per_frame(g: torch.Tensor, y: torch.Tensor, frames: int) -> torch.Tensor:
    """Gate (B, F, D) times y (B, S, D) -> (B, S, D)."""
    return (y.unflatten(1, (frames, -1)) * g[:, :, None]).flatten(1, 2)


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.width
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.cross = CrossAttention(cfg)
        self.norm3 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(D, int(D * cfg.mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(D * cfg.mlp_ratio), D))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c, text, bias, rope, frames: int):
        """x (B, S, D), c (B, F, D) per-frame conditioning -> (B, S, D)."""
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=-1)            # each (B, F, D)
        x = x + per_frame(g1, self.attn(modulate(self.norm1(x), s1, sc1, frames), rope), frames)
        x = x + self.cross(self.norm2(x), text, bias)
        x = x + per_frame(g2, self.mlp(modulate(self.norm3(x), s2, sc2, frames)), frames)
        return x


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        D, p, C = cfg.width, cfg.patch, cfg.in_channels
        self.patch_in = nn.Linear(C * p * p, D)
        if cfg.layout:   # absent otherwise, so weights without it load unchanged
            self.layout_in = nn.Linear(cfg.layout * p * p, D)
        self.t_embed = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.text_in = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, D))
        if cfg.pooled_text:   # absent otherwise, so weights without it load unchanged
            self.text_pool = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.patch_out = nn.Linear(D, C * p * p)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # adaLN-Zero: every block starts as the identity, as in DiT.
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        nn.init.zeros_(self.ada_out[-1].weight)
        nn.init.zeros_(self.ada_out[-1].bias)
        if self.cfg.pooled_text:   # starts as no change, so it can be added to trained weights
            nn.init.zeros_(self.text_pool[-1].weight)
        if self.cfg.layout:        # likewise: a layout starts as no change
            nn.init.zeros_(self.layout_in.weight)
        nn.init.zeros_(self.patch_out.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor,
                layout: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, F, H, W), t (B, F), text (B, L, Dt), gate (B, F, L), layout (B, K, F, H, W) or None (no
        layout: zeros) -> velocity (B, C, F, H, W)."""
        B, C, Fr, H, W = x.shape
        p = self.cfg.patch
        assert H % p == 0 and W % p == 0, f"latent {H}x{W} is not divisible by the patch {p}"
        h, w = H // p, W // p
        tokens = rearrange(x, "b c f (h p) (w q) -> b (f h w) (c p q)", p=p, q=p)  # (B, S, C p p)
        x_ = self.patch_in(tokens)                                                  # (B, S, D)
        if self.cfg.layout:   # no layout reads as an empty one, as in training's layout dropout
            layout = x.new_zeros(B, self.cfg.layout, Fr, H, W) if layout is None else layout.to(x.dtype)
            x_ = x_ + self.layout_in(rearrange(layout, "b c f (h p) (w q) -> b (f h w) (c p q)", p=p, q=p))
        c = self.t_embed(timestep_embedding(t, self.cfg.width))                     # (B, F, D)
        txt = self.text_in(text)                                                    # (B, L, D)
        if self.cfg.pooled_text:
            c = c + self.text_pool(pooled_text(txt, gate))                          # (B, F, D)
        bias = gate_bias(gate, h * w)                                               # (B, 1, S, L)
        rope = rope_frequencies(Fr, h, w, self.cfg.width // self.cfg.heads, self.cfg.rope_theta, x.device)
        for blk in self.blocks:
            x_ = blk(x_, c, txt, bias, rope, Fr)                                    # (B, S, D)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)                             # (B, F, D) each
        out = self.patch_out(modulate(self.norm_out(x_), shift, scale, Fr))         # (B, S, C p p)
        return rearrange(out, "b (f h w) (c p q) -> b c f (h p) (w q)", f=Fr, h=h, w=w, p=p, q=p)


def fit_layout(sd: dict[str, torch.Tensor], cfg: DiTConfig) -> dict[str, torch.Tensor]:
    """sd, its layout input (D, c * p * p) widened with zero columns to cfg's channels where it has fewer (a plain
    layout's weights under a grounded layout, engine/backends/toy/layout.py): the channels it lacks start as no
    change, as a new layout input does."""
    w, cols = sd.get("layout_in.weight"), cfg.layout * cfg.patch ** 2
    if w is None or w.shape[1] >= cols:
        return sd
    return {**sd, "layout_in.weight": F.pad(w, (0, cols - w.shape[1]))}
