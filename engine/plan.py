"""compile(timeline, backend) -> Plan: what the denoiser is conditioned on, per latent frame.

Rules (each tested in tests/test_plan.py):

Frames. The timeline's `round(duration_s * fps)` pixel frames are rounded up to a count
the backend's VAE accepts (causal: 1 + k*tf); the decoded clip is trimmed back to the
frames asked for (`out_frames`). Latent frame f holds the pixel frames
`spec.pixel_range(f)`; pixel frame n is shown at [n/fps, (n+1)/fps) and sampled at its centre.

Media. An image card fills every pixel frame of the latent frame that holds its moment
(a still for that latent frame). A video card covers the pixel frames whose start times
lie in [start_s, end_s), each showing the source frame on screen at the mapped source
time (retimed when the spans differ); a card that reaches the timeline's end also covers
the padding frames added by snapping. A latent frame partly covered by a card is kept in
proportion: its level is `1 - strength * coverage`; its uncovered pixel frames hold the
nearest covered frame so the VAE sees a still, never black. Each card is encoded on its
own window of latent frames.

Overlaps. Where media cards overlap, the one that keeps more (the lowest level) wins;
ties go to the later card. Cards with a `weight` curve (blends) are mixed instead:
known = sum(w_i * cov_i * z_i) / sum(w_i * cov_i), and they keep
sum(w_i * kept_i) / max(1, sum(w_i)) (a blend keeps what its cards keep; a lone weighted
card fades with its weight); the mixed group then competes with unweighted cards by the
same keeps-more rule, ordered as its latest card. A
timeline `noise` curve, when set, replaces the level of every frame that has media.

Text. Tokens are laid out as [global prompt][card 0][card 1]...[empty prompt]. The global
prompt's tokens are open to every frame. A card's gate on latent frame f is the mean over
f's pixel frames of the card's span indicator, whose inner edges ramp linearly over
`crossfade_s` centred on the edge (0.5 exactly at the boundary; no ramp at the timeline's
own ends), times its weight curve. The empty prompt's gate is `1 - sum(other gates)`
(clamped to [0, 1]), so no frame is ever left with nothing to attend to. Token ranges whose gate is zero on every frame are dropped; padding tokens
(mask False) are closed on every frame. The unconditional branch (CFG) sees the negative
prompt (or the empty prompt) on every frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch

from engine.backends.base import Backend, LatentSpec
from engine.timeline import ImageCard, Timeline, VideoCard


@dataclass(frozen=True)
class Grid:
    """The pixel and latent geometry of one timeline on one backend."""
    width: int
    height: int
    fps: float
    n_frames: int       # pixel frames N (snapped up to what the VAE accepts)
    latent_frames: int  # F
    latent_h: int
    latent_w: int
    spec: LatentSpec = field(repr=False)
    out_frames: int = 0  # frames kept after decoding: what the timeline asked for

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def pixel_times(self) -> np.ndarray:
        """(N,) centre time of each pixel frame in seconds."""
        return (np.arange(self.n_frames) + 0.5) / self.fps

    @cached_property
    def _bounds(self) -> np.ndarray:
        """(F,) first pixel frame of each latent frame."""
        return np.array([self.spec.pixel_range(f)[0] for f in range(self.latent_frames)])

    def frame_mean(self, values: np.ndarray) -> np.ndarray:
        """(..., N) per pixel frame -> (..., F) mean over each latent frame's pixel frames."""
        counts = np.diff(np.append(self._bounds, self.n_frames))
        return np.add.reduceat(values, self._bounds, axis=-1) / counts

    def latent_times(self) -> np.ndarray:
        """(F,) centre time of each latent frame's pixel frames."""
        return self.frame_mean(self.pixel_times())


def make_grid(tl: Timeline, spec: LatentSpec) -> Grid:
    n = spec.snap_frames(tl.n_frames)
    w, h = spec.frame_size(tl.aspect_ratio, tl.resolution)
    return Grid(w, h, float(tl.fps), n, spec.latent_frames(n), h // spec.spatial_factor, w // spec.spatial_factor,
                spec, out_frames=tl.n_frames)


def estimate_bytes(grid: Grid, batch: int = 1) -> int:
    """Peak memory a run of `batch` videos on this grid needs, by the backend's measured cost per latent
    cell (0 where the backend gives none: nothing is refused for memory then)."""
    return grid.spec.cell_bytes * grid.latent_frames * grid.latent_h * grid.latent_w * batch


@dataclass
class Segment:
    """A run of text tokens: which card they came from and where they sit in `text`."""
    name: str           # "global", "cards[2]" or "empty"
    card: int | None
    text: str
    start: int
    end: int


@dataclass
class Plan:
    grid: Grid
    known: torch.Tensor        # (C, F, h, w) latents of injected media, zeros where none
    start_level: torch.Tensor  # (F,) noise level at which each latent frame starts; 0 = frozen
    text: torch.Tensor         # (L, D) token embeddings of every segment, concatenated
    gate: torch.Tensor         # (F, L) in [0, 1]: may latent frame f attend to token l
    segments: list[Segment]
    uncond_text: torch.Tensor  # (L0, D) negative / empty prompt for classifier-free guidance
    uncond_gate: torch.Tensor  # (F, L0) every frame open to every (unpadded) token
    sources: list[str]         # (F,) what each latent frame was injected from, "" where nothing

    def head(self, k: int) -> Plan:
        """The plan of its first k latent frames alone, the same in every other respect (a keyframe pass)."""
        return self.window(0, k)

    def window(self, j: int, k: int) -> Plan:
        """The plan of latent frames j .. j+k-1 alone, as a clip of their own: frame j becomes its first (a
        keyframe pass at a storyboard's cut; with a causal VAE, whose first latent frame is a still of one pixel
        frame, the same latent as a still of frame j's pixel frames: engine/backends/toy/vae.py's pack)."""
        g = self.grid
        n = g.spec.pixel_range(k - 1)[1]
        out = g.out_frames - g.spec.pixel_range(j)[0] if j else g.out_frames
        grid = replace(g, n_frames=n, latent_frames=k, out_frames=max(1, min(out, n)))
        f = slice(j, j + k)
        return replace(self, grid=grid, known=self.known[:, f], start_level=self.start_level[f],
                       gate=self.gate[f], uncond_gate=self.uncond_gate[f], sources=self.sources[f])

    @property
    def inject_mask(self) -> torch.Tensor:
        """(F,) bool: frames that are frozen (frame injection)."""
        return self.start_level == 0

    def segment_gates(self) -> np.ndarray:
        """(F, n_segments) the gate of each segment per frame (max over its tokens)."""
        return np.stack([self.gate[:, s.start:s.end].amax(1).numpy() for s in self.segments], axis=1)

    def rows(self) -> list[list]:
        """Per latent frame: [index, pixel frames, time span s, start level, what is injected, the text it sees]."""
        g, sg, out = self.grid, self.segment_gates(), []
        for f in range(g.latent_frames):
            a, b = g.spec.pixel_range(f)
            sees = ", ".join(f"{s.name}" + ("" if sg[f, i] >= 0.999 else f" {sg[f, i]:.2f}")
                             for i, s in enumerate(self.segments) if sg[f, i] > 0)
            out.append([f, f"{a}-{b - 1}", f"{a / g.fps:.2f}-{b / g.fps:.2f}", round(float(self.start_level[f]), 2),
                        self.sources[f], sees])
        return out

    def explain(self) -> str:
        """A table a person can read: per latent frame, its pixel frames, level, source and the text it sees."""
        g = self.grid
        lines = [f"grid {g.width}x{g.height} px, {g.n_frames} frames at {g.fps:g} fps ({g.duration_s:.2f} s) "
                 f"(kept {g.out_frames}) -> {g.latent_frames} latent frames of {g.latent_h}x{g.latent_w}; {self.text.shape[0]} text tokens",
                 "segments: " + "; ".join(f"{s.name} [{s.start}:{s.end}] {s.text!r}" for s in self.segments),
                 f"{'f':>4} {'pixels':>9} {'time s':>12} {'level':>6}  {'injected':<22} sees"]
        for f, pix, span, level, source, sees in self.rows():
            lines.append(f"{f:>4} {pix:>9} {span:>12} {level:6.2f}  {source:<22} {sees}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- media
@dataclass
class Layer:
    """One media card on the latent grid."""
    card: int
    f0: int
    latents: torch.Tensor  # (C, nF, h, w) for latent frames f0 .. f0+nF-1
    coverage: np.ndarray   # (nF,) fraction of each latent frame's pixel frames the card covers
    level: np.ndarray      # (nF,) 1 - strength * coverage
    weight: np.ndarray | None  # (nF,) mixing weight (blend), None when the card has no curve


def _card_pixels(tl: Timeline, grid: Grid, card, cache: dict) -> dict[int, np.ndarray]:
    """Pixel frame index -> frame (H, W, 3) uint8 for the frames the card covers."""
    from engine.video_io import fit, probe, read_image, read_video
    path = tl.resolve(card.path)
    if isinstance(card, ImageCard):
        key = ("image", path)
        if key not in cache:
            cache[key] = fit(read_image(path), grid.width, grid.height, tl.fit)
        n = min(grid.out_frames - 1, round(card.at_s * grid.fps))  # an image "at the end" is the last kept frame
        a, b = grid.spec.pixel_range(grid.spec.latent_index(n))
        return {i: cache[key] for i in range(a, min(b, grid.n_frames))}
    src_fps = probe(path).fps or grid.fps  # a PNG folder with no stored rate runs at the timeline's
    starts = np.arange(grid.n_frames) / grid.fps
    end = np.inf if card.end_s >= grid.out_frames / grid.fps - 1e-9 else card.end_s  # the snap padding too
    inside = np.nonzero((starts >= card.start_s - 1e-9) & (starts < end - 1e-9))[0]
    speed = (card.source_end_s - card.source_in_s) / (card.end_s - card.start_s)
    src_t = card.source_in_s + (starts[inside] - card.start_s) * speed
    # Only the card's own source span is read; padding frames past it hold its last frame.
    first = int(np.floor(card.source_in_s * src_fps + 1e-6))
    last = max(first, int(np.ceil(card.source_end_s * src_fps - 1e-6)) - 1)
    key = ("video", path, first, last)
    if key not in cache:
        cache[key] = read_video(path, start_s=first / src_fps, end_s=(last + 1) / src_fps)  # (M, H, W, 3)
    frames = cache[key]
    src_i = np.clip(np.floor(src_t * src_fps + 1e-6).astype(int), first, min(last, first + len(frames) - 1)) - first
    fitted, out = {}, {}
    for n, i in zip(inside, src_i):
        if i not in fitted:
            fitted[i] = fit(frames[i], grid.width, grid.height, tl.fit)
        out[int(n)] = fitted[i]
    return out


def encode_window(backend: Backend, grid: Grid, frames: dict[int, np.ndarray]) -> tuple[int, torch.Tensor, np.ndarray]:
    """Encode the latent frames a card touches -> (f0, latents (C, nF, h, w), coverage (nF,))."""
    from engine.video_io import to_tensor
    spec = grid.spec
    lat = sorted({spec.latent_index(n) for n in frames})
    f0, f1 = lat[0], lat[-1]
    a, b = spec.pixel_range(f0)[0], spec.pixel_range(f1)[1]
    covered = np.array(sorted(frames))
    # Uncovered pixel frames hold the nearest covered frame: the VAE sees a still, not black.
    nearest = [int(covered[np.abs(covered - n).argmin()]) for n in range(a, b)]
    clip = np.stack([frames[n] for n in nearest])                          # (b-a, H, W, 3)
    lead = 1 if spec.causal_first and f0 > 0 else 0  # a window inside the clip needs a "first" frame to drop
    if lead:
        clip = np.concatenate([clip[:1], clip])
    z = backend.encode_video(to_tensor(clip)[None])[0][:, lead:]            # (C, nF, h, w)
    cov = np.array([np.isin(np.arange(*spec.pixel_range(f)), covered).mean() for f in range(f0, f1 + 1)])
    return f0, z, cov


def media_layers(tl: Timeline, backend: Backend, grid: Grid, cache: dict | None = None) -> list[Layer]:
    cache = {} if cache is None else cache
    layers = []
    times = grid.latent_times()
    for i, card in enumerate(tl.cards):
        if not isinstance(card, (ImageCard, VideoCard)) or card.strength <= 0:
            continue
        frames = _card_pixels(tl, grid, card, cache)
        if not frames:
            continue
        f0, z, cov = encode_window(backend, grid, frames)
        level = 1.0 - card.strength * cov
        weight = None
        if getattr(card, "weight", None) is not None:
            frac = (times[f0:f0 + len(cov)] - card.start_s) / (card.end_s - card.start_s)
            weight = card.weight(np.clip(frac, 0, 1))
        layers.append(Layer(i, f0, z, cov, level, weight))
    return layers


def combine_layers(layers: list[Layer], grid: Grid, channels: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """-> known (C, F, h, w), start_level (F,), sources (F,) by the overlap rules in the module docstring."""
    F_ = grid.latent_frames
    known = torch.zeros(channels, F_, grid.latent_h, grid.latent_w)
    level = np.ones(F_)
    sources = [""] * F_
    for f in range(F_):
        here = [(L, f - L.f0) for L in layers if 0 <= f - L.f0 < len(L.coverage) and L.coverage[f - L.f0] > 0]
        # each option: (level, order, latents (C, h, w), name); order breaks ties towards the later card
        options = [(L.level[j], L.card, L.latents[:, j], f"cards[{L.card}]") for L, j in here if L.weight is None]
        mixed = [(L, j) for L, j in here if L.weight is not None]
        if mixed:
            options.append(_mix(mixed))
        best = min(options, key=lambda o: (o[0], -o[1]), default=None)
        if best is not None and best[0] < 1.0:
            level[f], known[:, f], sources[f] = best[0], best[2], best[3]
    return known, level, sources


def _mix(mixed: list) -> tuple:
    """Weighted cards on one latent frame -> (level, order, latents (C, h, w), name).

    known = sum(w_i cov_i z_i) / sum(w_i cov_i); kept = sum(w_i kept_i) / max(1, sum w_i), so a blend's
    weights (summing to 1) keep what its cards keep, and a lone weighted card fades with its weight.
    """
    w = np.array([L.weight[j] for L, j in mixed])
    wc = np.array([L.weight[j] * L.coverage[j] for L, j in mixed])
    if wc.sum() <= 0:
        return (1.0, -1, None, "")
    z = sum(float(wi) * L.latents[:, j] for wi, (L, j) in zip(wc, mixed)) / float(wc.sum())
    kept = float(np.dot(w, [1.0 - L.level[j] for L, j in mixed])) / max(1.0, float(w.sum()))
    name = "+".join(f"cards[{L.card}] {wi / wc.sum():.0%}" for wi, (L, _) in zip(wc, mixed))
    return (1.0 - kept, max(L.card for L, _ in mixed), z, name)


def apply_noise_curve(tl: Timeline, grid: Grid, level: np.ndarray) -> np.ndarray:
    """(F,) levels, the timeline's noise curve replacing those of every frame that has media."""
    if tl.noise is None:
        return level
    curve = tl.noise(np.clip(grid.latent_times() * grid.fps / grid.out_frames, 0, 1))  # the timeline's own span
    return np.where(level < 1.0, curve, level)


# ----------------------------------------------------------------------------- text
def span_gate(grid: Grid, start_s: float, end_s: float, crossfade_s: float) -> np.ndarray:
    """(F,) mean over each latent frame's pixel frames of the span indicator with soft edges."""
    t = grid.pixel_times()
    start_s = -np.inf if start_s <= 1e-9 else start_s            # no fade-in at the timeline's start
    end_s = np.inf if end_s >= grid.out_frames / grid.fps - 1e-9 else end_s  # nor fade-out at its end
    if crossfade_s > 0:
        g = np.clip(np.minimum((t - start_s) / crossfade_s, (end_s - t) / crossfade_s) + 0.5, 0, 1)
    else:
        g = ((t >= start_s) & (t < end_s)).astype(float)
    return grid.frame_mean(g)


def text_layout(tl: Timeline, grid: Grid) -> list[tuple[str, int | None, str, np.ndarray]]:
    """[(name, card, text, gate (F,))] before encoding; see the module docstring for the rules."""
    F_ = grid.latent_frames
    rows = []
    if tl.prompt.strip():
        rows.append(("global", None, tl.prompt, np.ones(F_)))
    times = grid.latent_times()
    for i, card in enumerate(tl.cards):
        if card.kind != "text":
            continue
        g = span_gate(grid, card.start_s, card.end_s, tl.crossfade_s)
        if card.weight is not None:
            g = g * card.weight(np.clip((times - card.start_s) / (card.end_s - card.start_s), 0, 1))
        rows.append((f"cards[{i}]", i, card.text, g))
    total = np.sum([r[3] for r in rows], axis=0) if rows else np.zeros(F_)
    rows.append(("empty", None, "", np.clip(1.0 - total, 0, 1)))
    return [r for r in rows if r[3].max() > 0]


def compile_text(tl: Timeline, backend: Backend, grid: Grid):
    """-> text (L, D), gate (F, L), segments, uncond_text (L0, D), uncond_gate (F, L0)."""
    rows = text_layout(tl, grid)
    encoded = backend.encode_text([r[2] for r in rows] + [tl.negative_prompt])
    texts, gates, segments, pos = [], [], [], 0
    for (name, card, text, g), (tok, mask) in zip(rows, encoded):
        L = tok.shape[0]
        texts.append(tok)
        gates.append(torch.from_numpy(g).float()[:, None] * mask.float().cpu()[None, :])  # (F, L)
        segments.append(Segment(name, card, text, pos, pos + L))
        pos += L
    u_tok, u_mask = encoded[-1]
    u_gate = u_mask.float().cpu()[None, :].expand(grid.latent_frames, -1).clone()
    return torch.cat(texts), torch.cat(gates, dim=1), segments, u_tok, u_gate


# ----------------------------------------------------------------------------- compile
def compile(tl: Timeline, backend: Backend, media_cache: dict | None = None) -> Plan:
    """Timeline -> Plan on the backend's latent grid (see the module docstring)."""
    # 1. geometry
    grid = make_grid(tl, backend.spec)
    # 2. media: each card encoded on its window, then overlaps resolved per latent frame
    layers = media_layers(tl, backend, grid, media_cache)
    known, level, sources = combine_layers(layers, grid, backend.spec.channels)
    level = apply_noise_curve(tl, grid, level)
    # 3. text: segments, gates and the unconditional branch
    text, gate, segments, u_text, u_gate = compile_text(tl, backend, grid)
    return Plan(grid, known, torch.from_numpy(level).float(), text, gate, segments, u_text, u_gate, sources)


class _Outline:
    """A stand-in backend with a spec and no model: encoders return zeros of the right shapes, one token a
    prompt. Compiling on it gives the real plan's grid, levels, sources and gates (nothing there reads a
    latent or token value), so a page can show a model's plan without loading the model."""
    name = "outline"

    def __init__(self, spec: LatentSpec):
        self.spec = spec

    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.zeros(1, 1), torch.ones(1, dtype=torch.bool)) for _ in prompts]   # (1, 1), (1,)

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) -> zeros (B, C, latent frames, H / sf, W / sf)."""
        B, _, N, H, W = x.shape
        s = self.spec
        F_ = (1 + -(-(N - 1) // s.temporal_factor)) if s.causal_first else -(-N // s.temporal_factor)
        return torch.zeros(B, s.channels, F_, H // s.spatial_factor, W // s.spatial_factor)


def outline(tl: Timeline, spec: LatentSpec) -> Plan:
    """Timeline -> the Plan's geometry on a LatentSpec, with placeholder latents and tokens: the same rows()
    as compile() on a backend with that spec, at no model cost."""
    return compile(tl, _Outline(spec))
