"""`cinepatch probe`: does the denoiser read its prompt? Forward passes only, seconds on a CPU.

On a fixed set of rendered one-object clips, the rectified-flow velocity loss with a caption
that has one attribute swapped, over the loss with the true caption, on the latent cells the
object passes through, at high noise levels (where layout and direction are decided), in
text-to-video mode (every frame noised) and image-to-video mode (first latent frame clean).
Both captions see the same clip and the same noise, so a denoiser that ignores its text
scores exactly 1.00; above 1 means the swapped word costs loss, i.e. the model reads it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from engine.backends.toy import world

ATTRIBUTES = ("colour", "shape", "size", "direction", "background", "count")
LEVELS = (0.7, 0.9, 0.97)
MODES = ("t2v", "i2v")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _next(options, current: str, skip=()) -> str:
    """The option after current (cyclic), skipping any in skip: a deterministic swap."""
    options = list(options)
    i = options.index(current)
    for k in range(1, len(options) + 1):
        o = options[(i + k) % len(options)]
        if o not in skip:
            return o
    raise ValueError(f"no option left after {current!r}")


def swap(scene: world.SceneSpec, attribute: str) -> world.SceneSpec:
    """The scene with one attribute of its first object (or the background, or the object count) changed."""
    obj, rest = scene.objects[0], scene.objects[1:]
    used = {o.color for o in scene.objects}
    if attribute == "background":
        return dataclasses.replace(scene, background=_next(world.BACKGROUNDS, scene.background))
    if attribute == "count":   # one object more (or fewer): a second one, still, elsewhere
        if rest:
            return dataclasses.replace(scene, objects=(obj,))
        extra = world.ObjectSpec(_next(world.SHAPES, obj.shape), _next(world.COLORS, obj.color, used),
                                 "small", "still", 1 - obj.x, 1 - obj.y)
        return dataclasses.replace(scene, objects=(obj, extra))
    change = {"colour": ("color", lambda: _next(world.COLORS, obj.color, used)),
              "shape": ("shape", lambda: _next(world.SHAPES, obj.shape)),
              "size": ("size", lambda: "large" if obj.size == "small" else "small"),
              "direction": ("motion", lambda: OPPOSITE.get(obj.motion, "left"))}
    if attribute not in change:
        raise ValueError(f"attribute: {attribute!r} is not one of {', '.join(ATTRIBUTES)}")
    field, value = change[attribute]
    return dataclasses.replace(scene, objects=(dataclasses.replace(obj, **{field: value()}), *rest))


@dataclass
class ProbeClip:
    """One rendered clip, encoded: the true caption and one swapped caption per attribute."""
    z: torch.Tensor          # (C, F, h, w) clean latents
    cells: torch.Tensor      # (h, w) 1 where the object passes at any moment
    captions: list[str]      # [true, *swapped in ATTRIBUTES order]


def probe_scenes(n: int, seed: int = 777_000, size: tuple[int, int] = (64, 64)) -> list[world.SceneSpec]:
    """n one-object scenes whose object moves (direction is a row), from seeds far from training's."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        s = world.sample_scene(rng, size)
        if len(s.objects) == 1 and s.objects[0].motion != "still":
            out.append(s)
    return out


def make_clips(encode_video, spec, n: int = 12, size: tuple[int, int] = (64, 64), frames: int = 17,
               fps: float = 8, seed: int = 777_000) -> list[ProbeClip]:
    """Render, encode and caption the fixed probe set; encode_video (B, 3, N, H, W) -> (B, C, F, h, w)."""
    from engine.backends.toy.train_dit import object_mask
    from engine.video_io import to_tensor
    w, h = size
    out = []
    for scene in probe_scenes(n, seed, size):
        clip = to_tensor(world.render(scene, w, h, fps, frames))                  # (3, N, H, W)
        z = encode_video(clip[None])[0].float().cpu()                              # (C, F, h, w)
        cells = object_mask(clip, spec).amax(0)                                    # (h, w)
        out.append(ProbeClip(z, cells, [world.caption(scene)] + [world.caption(swap(scene, a)) for a in ATTRIBUTES]))
    return out


def _tokens(encode_text, captions: list[str], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> text (K, L, Dt) zero-padded, gate (K, F, L): every frame sees its caption's real tokens."""
    return padded([t.float().cpu() for t, _ in encode_text(captions)], frames)


def padded(toks: list[torch.Tensor], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K captions' tokens (L_k, Dt) -> text (K, L, Dt) zero-padded to one length, gate (K, F, L): every frame
    sees its caption's real tokens (on the tokens' device)."""
    L = max(t.shape[0] for t in toks)
    text = torch.stack([F.pad(t, (0, 0, 0, L - t.shape[0])) for t in toks])
    gate = torch.zeros(len(toks), frames, L, device=text.device)
    for k, t in enumerate(toks):
        gate[k, :, :t.shape[0]] = 1
    return text, gate


@torch.no_grad()
def clip_losses(denoise: Denoiser, clip: ProbeClip, text: torch.Tensor, gate: torch.Tensor, t: float,
                mode: str, generator: torch.Generator) -> torch.Tensor:
    """(K,) velocity loss per caption on the object's cells of the frames being generated."""
    z = clip.z
    C, F_, h, w = z.shape
    K = text.shape[0]
    eps = torch.randn(z.shape, generator=generator)                                 # one noise for all captions
    tau = torch.full((F_,), t)
    if mode == "i2v":
        tau[0] = 0                                                                  # first latent frame given clean
    x = (1 - tau[None, :, None, None]) * z + tau[None, :, None, None] * eps          # (C, F, h, w)
    v = denoise(x[None].expand(K, -1, -1, -1, -1), tau[None].expand(K, -1), text, gate).float().cpu()  # (K, C, F, h, w)
    wgt = (tau > 0).float()[:, None, None] * clip.cells                              # (F, h, w)
    err = (v - (eps - z)[None]) ** 2 * wgt                                          # (K, C, F, h, w)
    return err.sum((1, 2, 3, 4)) / (wgt.sum() * C).clamp_min(1)


def run_probe(denoise: Denoiser, encode_text, clips: list[ProbeClip], levels=LEVELS, modes=MODES,
              seed: int = 0) -> dict[tuple[str, str], dict[float, float]]:
    """{(mode, attribute): {t: loss(swapped) / loss(true)}}, losses summed over the clips first."""
    sums = {(m, t): torch.zeros(1 + len(ATTRIBUTES)) for m in modes for t in levels}
    for i, clip in enumerate(clips):
        text, gate = _tokens(encode_text, clip.captions, clip.z.shape[1])
        for j, t in enumerate(levels):
            for mode in modes:   # the same noise in both modes: only the clean first frame differs
                g = torch.Generator().manual_seed(seed * 100_003 + i * 101 + j)
                sums[mode, t] += clip_losses(denoise, clip, text, gate, t, mode, g)
    return {(m, a): {t: float(sums[m, t][1 + k] / sums[m, t][0]) for t in levels}
            for m in modes for k, a in enumerate(ATTRIBUTES)}


def table(ratios: dict[tuple[str, str], dict[float, float]]) -> str:
    """The probe as text: one row per (mode, attribute), one column per noise level."""
    levels = list(next(iter(ratios.values())))
    lines = [f"{'mode':<5} {'attribute':<11}" + "".join(f" {'t=' + format(t, 'g'):>7}" for t in levels)]
    for (mode, attr), row in ratios.items():
        lines.append(f"{mode:<5} {attr:<11}" + "".join(f" {row[t]:>7.3f}" for t in levels))
    return "\n".join(lines)


def one_line(ratios: dict[tuple[str, str], dict[float, float]], t: float = 0.9) -> str:
    """A compact summary for a training log: every attribute's ratio at one noise level, per mode."""
    modes = dict.fromkeys(m for m, _ in ratios)
    return " | ".join(f"{m} " + " ".join(f"{a[:5]} {ratios[m, a][t]:.3f}" for a in ATTRIBUTES) for m in modes)


def load_weights(path) -> torch.nn.Module:
    """The DiT from shipped fp16 safetensors (whole, or a LoRA file beside the DiT merged into that DiT:
    backend.load_model) or a training checkpoint (runs/*/ckpt*.pt, its EMA weights; a LoRA run's merged); a missing or
    damaged file is the one-line weights error."""
    from pathlib import Path

    from engine.backends.toy.backend import load_model
    path = Path(path)
    if path.suffix == ".safetensors" or not path.exists():
        return load_model(path.parent / "toy_dit.safetensors", path)   # a LoRA of the DiT beside it, or whole
    model = read_checkpoint(path)
    return (model.merge_and_unload() if hasattr(model, "merge_and_unload") else model).eval()


def read_checkpoint(path) -> torch.nn.Module:
    """A training checkpoint's EMA weights: the DiT, or for a LoRA run (train --lora) its peft LoraModel, unmerged;
    a damaged file is the one-line weights error."""
    from engine.backends.toy.adapter import lora_checkpoint
    from engine.backends.toy.model import DiT, DiTConfig
    from engine.params import InputError
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights, cfg = state.get("ema", state["model"]), DiTConfig(**state["config"])
        model = lora_checkpoint(weights, cfg)
        if model is None:
            model = DiT(cfg)
            model.load_state_dict(weights)
    except Exception as e:  # pickle, zip and key errors all mean the same to the person
        raise InputError(f"weights: {path} is not a readable DiT checkpoint ({e.__class__.__name__})") from None
    return model


def probe_weights(weights, vae_path=None, n_clips: int = 12, seed: int = 0, device: str = "cpu") -> dict:
    """The probe on a weights file (or a loaded DiT) with the shipped VAE and text encoder -> run_probe's ratios."""
    from engine.backends.toy.backend import ASSETS, MiniLM, load_vae, toy_spec
    model = (weights if isinstance(weights, torch.nn.Module) else load_weights(weights)).to(device)
    vae = load_vae(vae_path or ASSETS / "toy_vae.safetensors").to(device)
    encoder = MiniLM(device)
    with torch.no_grad():
        clips = make_clips(lambda p: vae.encode(p.to(device)), toy_spec(), n=n_clips)
        return run_probe(lambda x, t, txt, g: model(x.to(device), t.to(device), txt.to(device), g.to(device)),
                         encoder.encode, clips, seed=seed)
