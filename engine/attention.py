"""Per-segment gated cross-attention: the plan's `gate (F, L)` as an additive log-bias.

Video token s of latent frame f may attend to text token l only where `gate[f, l] > 0`;
soft gates (crossfades, blends) weight a token by `gate` before the softmax normalises,
which is exactly an additive `log(gate)` on the logits. A gate of 0 gives `-inf`, so the
token's weight is exactly 0 and its key and value never touch the output of that frame:
changing a card's text leaves the frames outside its span bit-identical.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gate_bias(gate: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """(B, F, L) gate in [0, 1] -> (B, 1, F*tokens_per_frame, L) additive bias (0 or log g, -inf where closed)."""
    B, Fr, L = gate.shape  # every frame has an open token: the plan guarantees it, the sampler checks it once
    bias = torch.log(gate.clamp_min(0))                                   # (B, F, L), -inf where 0
    bias = bias[:, :, None, :].expand(B, Fr, tokens_per_frame, L)         # (B, F, S_f, L)
    return bias.reshape(B, 1, Fr * tokens_per_frame, L)                   # (B, 1, S, L)


def gated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """q (B, h, S, d), k/v (B, h, L, d), bias (B, 1, S, L) or None -> (B, h, S, d)."""
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
