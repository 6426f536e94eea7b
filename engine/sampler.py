"""Rectified-flow samplers: pure functions over a denoiser callable and a Plan.

x_t = (1 - t) x0 + t eps; the denoiser returns the velocity v = eps - x0, so a step from
t to t' is x + (t' - t) v and the denoised estimate is x - t v.

Partial noise. Each latent frame f has a start level s_f (the plan's partial-noise curve):

- per-token mode (the denoiser takes t per frame): frame f lives at level
  tau_f(t) = min(t, s_f) and is told that level, so kept frames are seen clean
  (s_f = 0 never moves: frame injection); its step is tau_f(t') - tau_f(t), which is 0
  while t > s_f: untouched by the model.
- replacement mode (one t for all frames): while t > s_f frame f is held at
  (1 - t) known_f + t eps_f, and from the first step that reaches s_f it evolves freely.

Both end with frames of level 0 equal to `known` exactly. Classifier-free guidance runs the
conditional and unconditional branches as one batch, or one after the other where a backend
asks for it (`cfg_batch = False`: half the activation memory, as WanPipeline does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Cancelled(Exception):
    """Raised between steps when the cancel token is set."""


def schedule(steps: int, shift: float = 1.0) -> torch.Tensor:
    """(steps + 1,) noise levels from 1 to 0; shift > 1 spends more steps at high noise (SD3's time shift)."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def shift_for_tokens(n_tokens: int, base: float = 1.0, max_shift: float = 3.0, lo: int = 256, hi: int = 4096) -> float:
    """Linear in log(tokens) between `base` at `lo` tokens and `max_shift` at `hi` tokens (clamped)."""
    import math
    a = (math.log(max(n_tokens, 1)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return base + (max_shift - base) * min(max(a, 0.0), 1.0)


@dataclass
class Conditioning:
    """The plan's text side, batched for one denoiser call (cond rows first, then uncond)."""
    text: torch.Tensor   # (B', L, D)
    gate: torch.Tensor   # (B', F, L)
    guided: bool
    batched: bool = True  # guided: cond and uncond in one call (faster) or two (less memory)


def batch_conditioning(plan, batch: int, guided: bool, device, dtype, batched: bool = True) -> Conditioning:
    """Pad cond and uncond text to one length (padding closed by a zero gate) and repeat per sample."""
    rows = [(plan.text, plan.gate)] + ([(plan.uncond_text, plan.uncond_gate)] if guided else [])
    for _, g in rows:  # a frame with no open token would get NaN out of the softmax
        if not (g.amax(-1) > 0).all():
            raise ValueError("every latent frame needs at least one text token it may attend to")
    L = max(t.shape[0] for t, _ in rows)
    texts, gates = [], []
    for t, g in rows:
        pad = L - t.shape[0]
        texts.append(torch.nn.functional.pad(t.to(device, dtype), (0, 0, 0, pad)).expand(batch, -1, -1))
        gates.append(torch.nn.functional.pad(g.to(device, dtype), (0, pad)).expand(batch, -1, -1))
    return Conditioning(torch.cat(texts), torch.cat(gates), guided, batched)


def guided_velocity(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance: float) -> torch.Tensor:
    """x (B, C, F, h, w), t (B, F) -> guided velocity (B, C, F, h, w); one denoiser call, or two unbatched.
    guidance 1 runs the conditional branch alone (its rows come first)."""
    if not cond.guided or guidance == 1.0:
        B = x.shape[0]
        return denoiser(x, t, cond.text[:B], cond.gate[:B])
    if cond.batched:
        v_c, v_u = denoiser(torch.cat([x, x]), torch.cat([t, t]), cond.text, cond.gate).chunk(2)
    else:
        B = x.shape[0]
        v_c = denoiser(x, t, cond.text[:B], cond.gate[:B])
        v_u = denoiser(x, t, cond.text[B:], cond.gate[B:])
    return v_u + guidance * (v_c - v_u)


def _frames(v: torch.Tensor) -> torch.Tensor:
    """(F,) -> (1, 1, F, 1, 1) to broadcast over latents (B, C, F, h, w)."""
    return v[None, None, :, None, None]


def sample(denoiser: Denoiser, plan, sigmas: torch.Tensor, guidance: float = 1.0,
           noise: torch.Tensor | None = None, generator: torch.Generator | None = None, batch: int = 1,
           per_token: bool = True, solver: str = "euler", callback: Callable[[dict], None] | None = None,
           cancel=None, device="cpu", dtype=torch.float32, cfg_batch: bool = True,
           known: torch.Tensor | None = None, start_level: torch.Tensor | None = None,
           guidance_floor: float = 0.0) -> torch.Tensor:
    """Denoise the plan's grid -> latents (B, C, F, h, w) at t = 0.

    noise: (B, C, F, h, w) initial eps (drawn from `generator` when None). cancel: anything
    with `is_set()` (threading.Event), checked between steps. cfg_batch: False runs the guided
    branches one after the other (same result, half the activation memory). known (B or 1, C, F, h, w)
    and start_level (F,) stand in for the plan's (a second pass that keeps frames per variation).
    guidance_floor: steps from a noise level below it run the conditional branch alone (guidance in a
    limited interval, Kynkaanniemi et al. 2024): the late steps refine what guided ones laid out, at half the cost.
    """
    # 1. inputs on the device
    known = (plan.known[None] if known is None else known).to(device, dtype)  # (1 or B, C, F, h, w)
    s = (plan.start_level if start_level is None else start_level).to(device, torch.float32)  # (F,)
    if noise is None:
        noise = torch.randn((batch, *plan.known.shape), generator=generator)
    eps = noise.to(device, dtype)                                          # (B, C, F, h, w)
    cond = batch_conditioning(plan, eps.shape[0], guidance != 1.0, device, dtype, cfg_batch)
    path = _Path(known, eps, s, per_token)

    # 2. start: every frame at its own level (per-token) or all at sigma_0 (replacement)
    x = path.at(float(sigmas[0]))

    # 3. steps
    n = len(sigmas) - 1
    for i in range(n):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled at step {i} of {n}")
        t, t_next = float(sigmas[i]), float(sigmas[i + 1])
        if per_token and bool((path.level(t) == path.level(t_next)).all()):
            continue   # every frame still waits at its start level (or is kept): the step would change nothing
        x_prev = x
        x, v = _step(denoiser, x, t, t_next, path, cond, guidance if t >= guidance_floor else 1.0, solver)
        if callback is not None:  # the denoised estimate x - tau v only when someone looks at it
            denoised = x_prev - _frames(path.level(t)).to(x.dtype) * v
            callback({"step": i + 1, "steps": n, "t": t_next, "x": x, "denoised": denoised})

    # 4. injected frames come out exactly as encoded
    return torch.where(_frames(s == 0), known.expand_as(x), x)


def sample_keyframe_first(denoiser: Denoiser, plan, sigmas: torch.Tensor, guidance: float = 1.0,
                          noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                          batch: int = 1, callback: Callable[[dict], None] | None = None,
                          i2v: Denoiser | None = None, keyframe_frames: int = 0, keyframe: Denoiser | None = None,
                          continue_floor: float = 0.0, redraw_from: float = 1.0,
                          cuts: dict[int, tuple] | None = None, keyframe_guidance: float | None = None,
                          guide: Callable[[torch.Tensor], torch.Tensor | None] | None = None, guide_level: float = 1.0,
                          **kw) -> torch.Tensor:
    """Emu Video's factorisation -> latents (B, C, F, h, w): sample the plan, keep each variation's first
    latent frame, and sample again with it frozen (image-to-video from the model's own keyframe).

    For a model that reads a caption's motion from a given first frame but not from noise (the embedded
    model: assets/MODEL_CARD.md). `i2v`, a second denoiser trained for that, draws the second pass and any plan
    whose first frame is given (default: `denoiser` for both); `denoiser` draws plans whose first frame is
    partly noised (remix) below `redraw_from` and, unless `keyframe` (a third, trained on keyframes) is given,
    the keyframes. A plan whose first frame is partly noised from `redraw_from` up (remix; 0: every remix) is
    drawn keyframe first too: the keyframe from the source's first frame at its level, the rest from the
    source at theirs.
    `keyframe_frames` > 0: the keyframe pass samples only the plan's first that many latent frames
    (a cheaper pass for a model trained on them: 28 tokens instead of 252 for 2 s of 112x64), from the same
    noise. `continue_floor`: the second pass's guidance_floor (see sample): it continues a keyframe already
    laid out. `cuts`: {latent frame j: (a one-frame plan, its denoiser)} for each frame that starts a new shot
    (a storyboard's cut to a new scene), each drawn as a keyframe of its own (e.g. plan.window(f, 1), the shot's
    first frame as a clip's first) from frame j's noise and kept frozen at j in the second pass beside the first:
    the image-to-video model continues every shot from a frame, not only the first. The callback counts both
    passes' steps as one run (steps 1 .. 2n of 2n; the cuts' keyframes are not counted).
    `keyframe_guidance`: the keyframes' guidance scale (default `guidance`). `guide`: latents (B, C, F, h, w) with
    the keyframes in place -> a rough clip (B, C, F, h, w) made from them, or None; the second pass then starts its
    free frames from that clip at `guide_level` (a remix of it) instead of from pure noise.
    """
    i2v = i2v or denoiser
    if noise is None:
        noise = torch.randn((batch, *plan.known.shape), generator=generator)
    first_level = float(plan.start_level[0])
    if first_level == 0 or first_level < min(redraw_from, 1.0):
        return sample(i2v if first_level == 0 else denoiser, plan, sigmas, guidance, noise=noise,
                      callback=callback, **kw)
    n = len(sigmas) - 1

    def counted(offset: int):
        return None if callback is None else lambda d: callback({**d, "step": d["step"] + offset, "steps": 2 * n})
    k, kg = keyframe_frames or plan.known.shape[1], guidance if keyframe_guidance is None else keyframe_guidance
    first = sample(keyframe or denoiser, plan.head(k), sigmas, kg, noise=noise[:, :, :k],
                   callback=counted(0), **kw)                                                    # (B, C, k, h, w)
    known = plan.known[None].to(first).repeat(first.shape[0], 1, 1, 1, 1)
    known[:, :, 0] = first[:, :, 0]
    s = plan.start_level.clone()
    s[0] = 0
    for j, (shot, model) in (cuts or {}).items():   # a cut's frame drawn as a first frame: a still of one pixel frame
        known[:, :, j] = sample(model, shot, sigmas, kg, noise=noise[:, :, j:j + 1], **kw)[:, :, 0]
        s[j] = 0
    rough = guide(known) if guide is not None else None
    if rough is not None:
        free = s != 0
        known[:, :, free] = rough[:, :, free].to(known)
        s[free] = torch.minimum(s[free], torch.tensor(guide_level))
    return sample(i2v, plan, sigmas, guidance, noise=noise, callback=counted(n), known=known,
                  start_level=s, guidance_floor=continue_floor, **kw)


@dataclass
class _Path:
    """Where each frame's state lives at time t: its level and, for held frames, the known path."""
    known: torch.Tensor   # (1 or B, C, F, h, w)
    eps: torch.Tensor     # (B, C, F, h, w)
    s: torch.Tensor       # (F,) start levels
    per_token: bool

    def level(self, t: float) -> torch.Tensor:
        """(F,) the level each frame is at (and is told) at time t."""
        return torch.minimum(self.s, torch.tensor(t)) if self.per_token else torch.full_like(self.s, t)

    def at(self, t: float) -> torch.Tensor:
        """(B, C, F, h, w) every frame on its known path at time t."""
        lv = _frames(self.level(t)).to(self.eps.dtype)
        return (1 - lv) * self.known + lv * self.eps

    def hold(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Replacement mode: frames still above their level (and frozen ones) go back on the known path."""
        if self.per_token:
            return x
        held = _frames((t > self.s) | (self.s == 0))
        return torch.where(held, (1 - t) * self.known + t * self.eps, x)


def _step(denoiser, x, t: float, t_next: float, path: _Path, cond: Conditioning, guidance: float, solver: str):
    """One Euler (or Heun) step -> (x at t_next (B, C, F, h, w), velocity at t (B, C, F, h, w))."""
    B, F_ = x.shape[0], x.shape[2]
    tau, tau_next = path.level(t), path.level(t_next)
    v = guided_velocity(denoiser, x, tau.to(x.dtype).expand(B, F_), cond, guidance)
    dt = _frames(tau_next - tau).to(x.dtype)
    x_next = path.hold(x + dt * v, t_next)
    if solver == "heun" and t_next > 0:
        v2 = guided_velocity(denoiser, x_next, tau_next.to(x.dtype).expand(B, F_), cond, guidance)
        x_next = path.hold(x + dt * (v + v2) / 2, t_next)
    # frames whose level does not change are not touched at all (exactly, whatever v is)
    moving = _frames(tau_next != tau) if path.per_token else _frames(torch.ones_like(path.s, dtype=torch.bool))
    return torch.where(moving, x_next, x), v
