"""The engine's Python API: timeline in, frames or files out.

    tl = engine.ops.t2v("a red circle moving left", duration_s=2)
    backend = load_backend("toy")
    videos = generate(tl, backend, Settings(steps=20))        # list of (N, H, W, 3) uint8
    render(tl, backend, Settings(), "out.mp4")               # mp4 + out.json sidecar

Every CLI verb and every studio action ends here.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from engine import plan as plan_mod
from engine import sampler
from engine.backends.registry import load_backend  # noqa: F401  (re-exported)
from engine.params import PARAMS, InputError, check
from engine.timeline import Timeline, fresh_seed, parse_aspect

VERSION = "0.1.0"


@dataclass
class Settings:
    """How to sample; each range is declared once in engine/params.py."""
    steps: int = PARAMS["steps"].default
    guidance: float = PARAMS["guidance"].default
    shift: float = PARAMS["shift"].default     # 0: the backend's choice for the grid
    solver: str = PARAMS["solver"].default
    audio: bool = PARAMS["audio"].default      # keep the sound a model makes (registry.SOUND) in the mp4

    def __post_init__(self):
        for name in ("steps", "guidance", "shift", "solver"):
            setattr(self, name, check(name, getattr(self, name)))
        self.audio = bool(check("audio", self.audio))


def resolve_settings(tl: Timeline, explicit: dict | None = None) -> Settings:
    """The timeline's preset settings, overridden by explicit ones (CLI flags, studio controls, a sidecar)."""
    from engine import presets
    base = dict(presets.load(tl.preset).settings) if tl.preset else {}
    base.update({k: v for k, v in (explicit or {}).items() if v is not None})
    return Settings(**base)


def with_preset(tl: Timeline) -> Timeline:
    """The timeline with its preset's style and negative prompt applied (the stored timeline keeps the name)."""
    from engine import presets
    return presets.apply(presets.load(tl.preset), tl) if tl.preset else tl


def check_sound(tl: Timeline, settings: Settings, backend_name: str | None) -> None:
    """Refuse Settings.audio where no sound can be kept, before any work is done."""
    from engine.backends.registry import SOUND
    if not settings.audio:
        return
    if backend_name not in SOUND:
        raise InputError(f"audio: the {backend_name or 'chosen'} model makes no sound; of the models here only "
                         f"LTX-2 ({', '.join(SOUND)}) does")
    if tl.assemble is not None:
        raise InputError("audio: sound is kept for generations and storyboards; an extend, loop or re-cut joins "
                         "in source clips, and their sound is not carried")


def made_sounds(tl: Timeline, backend, settings: Settings) -> list:
    """After generate(): each variation's sound, (samples (S, channels) float in [-1, 1], rate), when the settings
    keep it and the backend made one (a whole-clip remix makes none); else None."""
    keep = settings.audio and tl.assemble is None and hasattr(backend, "audio_for")
    return [backend.audio_for(k) if keep else None for k in range(tl.variations)]


def needs_model(tl: Timeline) -> bool:
    """False for pure re-cuts: an assembly made only of source clips."""
    return tl.assemble is None or any(p.source == "generated" for p in tl.assemble)


def check_cancel(cancel, phase: str) -> None:
    """Raise sampler.Cancelled when the cancel token (anything with is_set(), or None) is set."""
    if cancel is not None and cancel.is_set():
        raise sampler.Cancelled(f"cancelled {phase}")


def generate_latents(tl: Timeline, backend, settings: Settings, callback=None, cancel=None):
    """-> (plan, latents (B, C, F, h, w)) with B = tl.variations, variation k seeded with tl.seed + k
    (a timeline without a seed: a fresh one, so generating it again gives a new video).
    The preset's LoRAs and cache hook (if any) are on the backend for this job only."""
    from engine import presets
    with presets.on_backend(tl, backend):
        return _generate_latents(fresh_seed(tl), backend, settings, callback, cancel)


def _generate_latents(tl: Timeline, backend, settings: Settings, callback=None, cancel=None):
    check_sound(tl, settings, getattr(backend, "name", None))
    if hasattr(backend, "audio_for"):   # a model that makes sound with its frames: this job's seed, and keep it?
        backend.keep_audio, backend.audio_seed = settings.audio, tl.seed
    # 1. compile the timeline (its preset applied) onto the backend's grid: encodes its media and text
    check_cancel(cancel, "before encoding")
    plan = plan_mod.compile(with_preset(tl), backend)
    check_cancel(cancel, "after encoding")
    # 2. noise per variation, each reproducible on its own
    noise = torch.stack([torch.randn(plan.known.shape, generator=torch.Generator().manual_seed(tl.seed + k))
                         for k in range(tl.variations)])                     # (B, C, F, h, w)
    # 3. schedule for this grid
    g = plan.grid
    n_tokens = g.latent_frames * g.latent_h * g.latent_w
    if hasattr(backend, "sigmas") and not settings.shift:
        # Hook (issue 5): a backend may supply its own schedule (ltx: LTXPipeline's shifted sigmas, so the
        # engine conforms to diffusers) and learns the grid's frame rate (LTX's rope scales time by it).
        backend.frame_rate = g.fps
        sigmas = backend.sigmas(settings.steps, n_tokens)
    else:
        sigmas = sampler.schedule(settings.steps, settings.shift or backend.shift(n_tokens))
    # 4. sample (a backend that guides its sound as the frames are guided is told the scale for this run only)
    told = hasattr(backend, "audio_for")
    if told:
        backend.guidance = settings.guidance
    try:
        # a backend whose model reads motion from a first frame, not from noise, samples keyframe first
        # (with a second model for the image-to-video pass where it has one)
        kf = getattr(backend, "keyframe_first", False)
        run = partial(sampler.sample_keyframe_first,
                      i2v=backend.i2v_denoiser(plan, tl.seed, tl.variations)
                      if hasattr(backend, "i2v_denoiser") else getattr(backend, "denoise_i2v", None),
                      keyframe_frames=getattr(backend, "keyframe_frames", 0),
                      keyframe=backend.keyframe_denoiser(plan, tl.seed, tl.variations)
                      if hasattr(backend, "keyframe_denoiser") else getattr(backend, "denoise_keyframe", None),
                      cuts={j: (plan.window(f, 1), backend.keyframe_denoiser(plan, tl.seed, tl.variations, frame=f))
                            for j, f in shot_cuts(backend, plan)},
                      keyframe_guidance=1 + (settings.guidance - 1) * getattr(backend, "keyframe_guidance", 1.0),
                      guide=backend.guide(plan, tl.seed, tl.variations) if hasattr(backend, "guide") else None,
                      guide_level=getattr(backend, "guide_level", 1.0),
                      continue_floor=getattr(backend, "continue_floor", 0.0),
                      redraw_from=getattr(backend, "redraw_from", 1.0)) if kf else sampler.sample
        x = run(backend.denoise, plan, sigmas, settings.guidance, noise=noise,
                per_token=backend.spec.per_token_timestep, solver=settings.solver,
                callback=callback, cancel=cancel, device=getattr(backend, "device", "cpu"),
                cfg_batch=getattr(backend, "cfg_batch", True))
    finally:
        if told:
            backend.guidance = None
    return plan, x


def shot_cuts(backend, plan) -> list[tuple[int, int]]:
    """[(latent frame that starts a shot, the frame its keyframe is drawn as)] where a backend that samples keyframe
    first says a storyboard cuts to a new scene (ToyBackend.cuts); [] elsewhere."""
    return backend.cuts(plan) if getattr(backend, "keyframe_first", False) and hasattr(backend, "cuts") else []


def decode_frames(backend, latents: torch.Tensor, n_frames: int, shots: list[int] = ()) -> list[np.ndarray]:
    """(B, C, F, h, w) -> B clips (N, H, W, 3) uint8; shots: latent frames that start a new shot (shot_cuts), for a
    backend whose decoder takes them."""
    from engine.video_io import from_tensor
    with torch.no_grad():
        pixels = backend.decode(latents, shots=tuple(shots)) if shots else backend.decode(latents)  # (B, 3, N, H, W)
        # to uint8 where the pixels are (a GPU's): a quarter of float32's bytes cross to the host
        return [from_tensor(p[:, :n_frames]) for p in pixels]


def output_size(tl: Timeline) -> tuple[int, int]:
    """Frame size of a model-free re-cut: the aspect at the resolution, even sides for H.264."""
    aw, ah = parse_aspect(tl.aspect)
    short = tl.resolution - tl.resolution % 2
    long_ = int(round(short * max(aw, ah) / min(aw, ah) / 2)) * 2
    return (long_, short) if aw >= ah else (short, long_)


def planned_size(tl: Timeline, spec=None) -> tuple[int, int, float]:
    """(width, height, seconds) of the clip a timeline will make, before it is made.

    `spec` is the backend's LatentSpec (None for a model-free re-cut); sources cut in by `assemble`
    are counted at the timeline's fps, so the length can differ by a frame from what is decoded.
    """
    from engine.plan import make_grid
    if spec is not None and needs_model(tl):
        grid = make_grid(tl, spec)
        w, h = grid.width, grid.height
    else:
        w, h = output_size(tl)
    n = tl.n_frames if tl.assemble is None else \
        sum(round(p.out_s * tl.fps) - round(p.in_s * tl.fps) for p in tl.assemble)
    return w, h, n / tl.fps


def assemble(tl: Timeline, generated: np.ndarray | None, size: tuple[int, int], cancel=None) -> np.ndarray:
    """Cut the output together from generated time and source clips -> (N, H, W, 3) at tl.fps."""
    from engine.video_io import fit, read_video
    if tl.assemble is None:
        return generated
    parts = []
    for p in tl.assemble:
        check_cancel(cancel, "while cutting")
        if p.source == "generated":
            a, b = round(p.in_s * tl.fps), round(p.out_s * tl.fps)
            parts.append(generated[a:min(b, len(generated))])
        else:
            clip = read_video(tl.resolve(p.source), fps=tl.fps, start_s=p.in_s, end_s=p.out_s)
            parts.append(fit(clip, size[0], size[1], tl.fit))
    return np.concatenate([q for q in parts if len(q)])


def generate(tl: Timeline, backend=None, settings: Settings | None = None, callback=None, cancel=None) -> list[np.ndarray]:
    """Timeline -> tl.variations clips (N, H, W, 3) uint8 at tl.fps, assembled."""
    settings = settings or Settings()
    if not needs_model(tl):
        clip = assemble(tl, None, output_size(tl), cancel)
        check_cancel(cancel, "after cutting")
        return [clip] * tl.variations
    plan, x = generate_latents(tl, backend, settings, callback, cancel)
    grid = plan.grid
    check_cancel(cancel, "before decoding")
    clips = decode_frames(backend, x, grid.out_frames, [j for j, _ in shot_cuts(backend, plan)])
    check_cancel(cancel, "after decoding")
    return [assemble(tl, c, (grid.width, grid.height), cancel) for c in clips]


def sidecar(tl: Timeline, backend_name: str, settings: Settings, variation: int, extra: dict | None = None) -> dict:
    """Everything needed to make the same video again (media paths made absolute)."""
    story = tl.to_dict()
    for c in story["cards"]:
        if "path" in c:
            c["path"] = str(Path(tl.resolve(c["path"])).resolve())
    for p in story["assemble"] or []:
        if p["source"] != "generated":
            p["source"] = str(Path(tl.resolve(p["source"])).resolve())
    seed = None if tl.seed is None else tl.seed + variation   # None: a re-cut, made without the model
    story["seed"] = seed
    story["variations"] = 1
    if tl.preset:  # what the preset said when this was made, in case the file changes later
        from engine import presets
        extra = {"preset": asdict(presets.load(tl.preset)), **(extra or {})}
    return {"cinepatch": VERSION, "backend": backend_name, "seed": seed, "variation": variation,
            "settings": asdict(settings), "storyboard": story, **(extra or {})}


def output_paths(out: Path, k: int, n: int) -> Path:
    """out.mp4, or out_v0.mp4, out_v1.mp4 ... when several variations are made."""
    return out if n == 1 else out.with_name(f"{out.stem}_v{k}{out.suffix}")


def render(tl: Timeline, backend, settings: Settings | None, out: str | Path, overwrite: bool = False,
           backend_name: str | None = None, callback=None, cancel=None) -> list[Path]:
    """Generate and write each variation to an mp4 (or gif / png folder) with a `.json` sidecar."""
    from engine.files import atomic_write_text, check_writable
    from engine.video_io import check_output, write_video
    settings = settings or Settings()
    tl = fresh_seed(tl)  # drawn once here, so each sidecar records the seed its video was made with
    out = Path(out)
    outs = [output_paths(out, k, tl.variations) for k in range(tl.variations)]
    for o in outs:  # refuse before spending minutes on the model
        check_output(o)
        check_writable(o, overwrite)
        check_writable(o.with_suffix(".json"), overwrite, "out")
    t0 = time.perf_counter()
    clips = generate(tl, backend, settings, callback, cancel)
    sounds = made_sounds(tl, backend, settings)
    seconds = time.perf_counter() - t0
    name = backend_name or getattr(backend, "name", "none")
    for k, (o, clip) in enumerate(zip(outs, clips)):
        write_video(o, clip, tl.fps, overwrite=overwrite, audio=sounds[k])
        meta = sidecar(tl, name, settings, k, {"frames": int(len(clip)), "size": [int(clip.shape[2]), int(clip.shape[1])],
                                               "fps": tl.fps, "seconds_to_make": round(seconds, 2)})
        atomic_write_text(o.with_suffix(".json"), json.dumps(meta, indent=2) + "\n", overwrite=True)
    return outs


def timeline_from_sidecar(d: dict, base_dir: str = ".") -> tuple[Timeline, dict]:
    """A sidecar (or a plain storyboard) -> (timeline, sidecar settings or {})."""
    if isinstance(d, dict) and "storyboard" in d and "cinepatch" in d:
        if not isinstance(d.get("settings", {}), dict):
            raise InputError("settings: a sidecar's settings must be an object")
        return Timeline.from_dict(d["storyboard"], base_dir), d
    return Timeline.from_dict(d, base_dir), {}
