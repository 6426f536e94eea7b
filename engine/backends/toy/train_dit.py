"""Stage 2: the spacetime DiT on frozen VAE latents, with storyboards, injection and CFG in-distribution.

Each batch is one bucket (frame size, frame count) so latents stack. Encoding clips
costs as much as a training step on a CPU, so each bucket keeps a pool of encoded clips:
every step renders and encodes a couple of fresh clips into it and trains on a batch
drawn from it, each with its own noise, timestep and conditioning. Per sample a
conditioning mode is drawn so every engine feature is seen in training:
- text: one caption over the clip;
- storyboard: 2-3 segments, each its own caption gated to its span (hard cuts to a new
  scene, or the same objects changing motion), sometimes with soft edges;
- injection: the first latent frame, a prefix, a suffix or both ends kept (start level 0);
- partial noise: every frame kept at a random level (remix), or a random curve (blend).
Frames are noised per token to t_f = min(t, s_f) exactly as the sampler does; the loss
is the rectified-flow velocity on the frames that are not frozen. 10 % of samples drop
the text (the empty prompt, every frame open) for classifier-free guidance.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from engine.backends.toy import world
from engine.backends.toy.layout import CHANNELS, GROUNDED, SILHOUETTE, frame_times, new_scene, story_layout
from engine.backends.toy.model import DiT, DiTConfig, fit_layout
from engine.backends.toy.train import ASSETS, SIZES, Run, export
from engine.plan import Grid, span_gate
from engine.video_io import to_tensor

FPS_CHOICES = (6, 8, 8, 12)
FRAME_COUNTS = (9, 17, 17, 25)   # 5, 9, 9, 13 latent frames: about 1-4 s at these rates
DIT_CONFIG = DiTConfig(in_channels=16, patch=2, width=192, depth=6, heads=4, text_dim=384)
POOL = 48       # encoded clips kept per bucket
FRESH = 2       # new clips per step (--fresh: more where the denoiser step is cheap, as on a GPU)


class TextCache:
    """Caption -> MiniLM token embeddings (L, 384), memoised (captions repeat)."""

    def __init__(self, encoder, size: int = 20000):
        self.encoder, self.size, self.cache = encoder, size, OrderedDict()

    def __call__(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            self.cache[text] = self.encoder.encode([text])[0][0]
            if len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return self.cache[text]


def continue_scene(scene: world.SceneSpec, w: int, h: int, t: float, rng) -> world.SceneSpec:
    """The same objects where they are at time t, each with a fresh motion."""
    return world.continued(scene, w, h, t, [rng.choice(world.MOTIONS) for _ in scene.objects])


def render_sample(rng, w: int, h: int, fps: float, n: int, simple: bool = False, two: bool = False,
                  keyed: int = 0):
    """-> clip (N, H, W, 3), segments [(caption, first_frame, end_frame)], scenes [(scene, start s)] one per
    segment. simple: the curriculum's first stage, one object under one caption; two: its first scene holds two
    objects. keyed: a VAE's temporal factor (0: off): every cut falls on a latent frame's first pixel frame, and
    a cut to a new scene (layout.new_scene) holds its first frame over that latent frame, as the keyframe the
    sampler draws there (ToyBackend.cuts)."""
    scene = world.sample_scene(rng, (w, h), n_objects=2 if two else None)
    if simple:
        scene = dataclasses.replace(scene, objects=scene.objects[:1])
    if simple or rng.random() < 0.7 or n < 9:
        return world.render(scene, w, h, fps, n), [(world.caption(scene, rng), 0, n)], [(scene, 0.0)]
    k = int(rng.integers(2, 4))
    cuts = sorted(rng.choice(np.arange(3, n - 2), size=k - 1, replace=False).tolist())
    if keyed:   # latent frame j >= 1 starts at pixel frame 1 + (j - 1) * keyed
        cuts = sorted({a - (a - 1) % keyed for a in cuts})
    bounds = [0, *cuts, n]
    parts, segs, spans, prev_a = [], [], [], 0
    for a, b in zip(bounds, bounds[1:]):
        if a > 0:
            scene = continue_scene(scene, w, h, (a - prev_a) / fps, rng) if rng.random() < 0.5 \
                else world.sample_scene(rng, (w, h))
        prev_a = a
        part, caption = world.render(scene, w, h, fps, b - a), world.caption(scene, rng)
        if keyed and a > 0 and new_scene(segs[-1][0], caption):
            part[1:keyed] = part[0]
        parts.append(part)
        segs.append((caption, a, b))
        spans.append((scene, a / fps))
    return np.concatenate(parts), segs, spans


def start_levels(rng, F_: int) -> np.ndarray:
    """(F,) a conditioning pattern: 1 = generate, 0 = frozen, between = partial noise."""
    s = np.ones(F_)
    r = rng.random()
    if r < 0.60:                                          # plain generation is what the eval judges most
        return s
    if r < 0.70:
        s[0] = 0                                          # image to video
    elif r < 0.80:
        k = int(rng.integers(1, max(2, F_ // 2)))        # extend / loop: ends kept
        mode = rng.integers(3)
        if mode in (0, 2):
            s[:k] = 0
        if mode in (1, 2):
            s[-k:] = 0
    elif r < 0.90:
        s[:] = rng.uniform(0.2, 0.95)                     # remix
    else:
        xs = np.linspace(0, 1, F_)                        # blend-like curve
        c = rng.uniform(0.2, 0.8)
        s = np.clip(rng.uniform(0.5, 1.0) * np.exp(-((xs - c) / rng.uniform(0.1, 0.4)) ** 2) +
                    rng.uniform(0, 0.3), 0, 1)
    return s


def segment_gates(segs, spec, n_pixels: int, F_: int, soft: float) -> np.ndarray:
    """(n_segments, F) each segment's gate per latent frame: the plan's own rule (engine.plan.span_gate),
    on a grid whose time unit is one frame, so training gates text exactly as inference does."""
    grid = Grid(1, 1, 1.0, n_pixels, F_, 1, 1, spec, out_frames=n_pixels)
    return np.array([span_gate(grid, a, b, soft) for _, a, b in segs])

def object_mask(clip: torch.Tensor, spec) -> torch.Tensor:
    """(3, N, H, W) clip in [-1, 1] -> (F, h, w) 1 where a latent cell holds any object pixel.

    Backgrounds are flat, so a pixel off its frame's median colour is an object; cells are
    max-pooled so an object's edge counts, and latent frame k covers its own pixel frames."""
    off = (clip - clip.flatten(2).median(2).values[:, :, None, None]).abs().amax(0) > 0.1   # (N, H, W)
    f = spec.spatial_factor
    cells = F.max_pool2d(off[:, None].float(), f)[:, 0]                                    # (N, h, w)
    tf = spec.temporal_factor
    head, rest = cells[:1], cells[1:]                                                     # causal first frame
    if not len(rest):   # a keyframe: one pixel frame, one latent frame
        return head
    rest = rest.reshape(-1, tf, *rest.shape[1:]).amax(1)
    return torch.cat([head, rest])


def encode_clips(rng, vae, text, spec, w: int, h: int, n: int, k: int, simple: bool = False,
                 fps: float | None = None, two=lambda: False, contrast: tuple[str, ...] = (),
                 layout: int = CHANNELS, keyed: bool = False) -> list[dict]:
    """k fresh clips of one bucket -> [{"z": (C, F, h, w), "mask": (F, h, w), "segs": [(tokens (L, D), gate (F,))],
    "layout": (layout, F, h, w) or None, "cuts": [latent frame]}]: layout, its channels (engine/backends/toy/
    layout.py; 0: none made); keyed: storyboards' cuts to a new scene held still (render_sample), and "cuts" the
    latent frames they start (else none).
    two(): whether the next clip's scene is made to hold two objects. contrast: for clips under one caption,
    "pairs" too: per attribute, the tokens of the canonical caption and of that caption with the attribute
    swapped (none for storyboards)."""
    from engine.probe import swap
    F_ = spec.latent_frames(n)
    clips, metas, pairs, stories, rates = [], [], [], [], []
    for _ in range(k):
        rate = float(rng.choice(FPS_CHOICES)) if fps is None else fps
        clip, segs, spans = render_sample(rng, w, h, rate, n, simple, two(), spec.temporal_factor if keyed else 0)
        clips.append(to_tensor(clip))
        metas.append(segs)
        stories.append(spans)
        rates.append(rate)
        pairs.append([(text(world.caption(spans[0][0])), text(world.caption(swap(spans[0][0], a)))) for a in contrast
                      if len(segs) == 1])
    with torch.no_grad():
        z = vae.encode(torch.stack(clips).to(next(vae.parameters()).device))  # (k, C, F, h, w)
    out = []
    for zi, clip, segs, pair, spans, rate in zip(z, clips, metas, pairs, stories, rates):
        soft = float(rng.choice([0, 0, 2, 4]))
        gates = segment_gates(segs, spec, n, F_, soft)
        cuts = [spec.latent_index(a) for (before, _, _), (c, a, _) in zip(segs, segs[1:])
                if keyed and new_scene(before, c)]
        out.append({"z": zi, "mask": object_mask(clip, spec).to(zi.device), "pairs": pair, "cuts": cuts,
                    "segs": [(text(c), g) for (c, _, _), g in zip(segs, gates)],
                    # the layout (engine/backends/toy/layout.py): its objects' centres per latent frame, each
                    # frame's from the storyboard scene it shows
                    "layout": None if not layout else torch.from_numpy(story_layout(
                        spans, w, h, spec.spatial_factor, frame_times(spec, zi.shape[1], rate), layout)).to(zi.device)})
    return out


class Pools:
    """Per bucket (width, height, frames): the last POOL encoded clips."""

    def __init__(self, rng, vae, text, spec, fresh: int = FRESH, buckets: tuple[tuple[int, int, int, float], ...] = (),
                 two_share: float = 0.0, two_rng=None, contrast: tuple[str, ...] = (), layout: int = CHANNELS,
                 keyed: bool = False):
        self.rng, self.vae, self.text, self.spec, self.pools, self.fresh = rng, vae, text, spec, {}, fresh
        self.contrast, self.picks = contrast, []   # picks: the last batch's pool items (their contrast pairs)
        self.layout_channels = layout   # each clip's layout's (0: none made)
        self.keyed = keyed              # storyboards' cuts to a new scene held still (encode_clips)
        self.buckets = buckets   # ((w, h, frames, fps), ...): every batch from one of these (an ablation), else all
        # a share of fresh clips made to hold two objects (the world draws one or two): its own rng, so the
        # rest of the data stream is a run without it's
        self.two = (lambda: two_rng.random() < two_share) if two_share > 0 else (lambda: False)

    def batch(self, B: int, empty: torch.Tensor, simple: bool = False, keyframe: bool = False):
        """-> x0 (B, C, F, h, w), levels (B, F), text (B, L, D), gate (B, F, L), object mask (B, F, h, w).
        simple: fresh clips hold one object under one caption, and every sample is plain generation.
        keyframe: single frames (F = 1), plain generation: what a keyframe-first sampler's first pass draws."""
        rng = self.rng
        w, h = SIZES[rng.integers(len(SIZES))]
        n = int(rng.choice(FRAME_COUNTS))
        fps = None
        if self.buckets:   # one bucket draws nothing more, so its data stream is the one-bucket run's
            w, h, n, fps = self.buckets[rng.integers(len(self.buckets)) if len(self.buckets) > 1 else 0]
        fresh_n = self.fresh
        if keyframe:   # a frame costs a ninth of a 17-frame clip to encode, so refresh its pool as fast per sample
            n, fresh_n = 1, self.fresh * max(1, B // 8)
        pool = self.pools.setdefault((w, h, n), [])
        fresh = encode_clips(rng, self.vae, self.text, self.spec, w, h, n, fresh_n if len(pool) >= B else B,
                             simple, fps, self.two, self.contrast, self.layout_channels, self.keyed)
        pool[:] = (pool + fresh)[-max(POOL, 4 * B):]   # a big GPU batch needs a bigger pool
        picks = self.picks = [pool[i] for i in rng.choice(len(pool), size=B, replace=len(pool) < B)]
        F_ = self.spec.latent_frames(n)
        texts, gates = [], []
        for item in picks:
            segs = [(empty, np.ones(F_))] if rng.random() < 0.1 else item["segs"]   # condition dropout (CFG)
            texts.append(torch.cat([t for t, _ in segs]))
            gates.append(torch.cat([torch.from_numpy(g).float().to(t.device)[:, None].expand(-1, t.shape[0])
                                    for t, g in segs], 1))
        L = max(t.shape[0] for t in texts)
        text_b = torch.stack([F.pad(t, (0, 0, 0, L - t.shape[0])) for t in texts])
        gate_b = torch.stack([F.pad(g, (0, L - g.shape[1])) for g in gates])
        levels = torch.from_numpy(np.stack([start_levels(rng, F_) for _ in picks])).float().to(text_b.device)
        if simple or keyframe:
            levels = torch.ones_like(levels)
        return torch.stack([p["z"] for p in picks]), levels, text_b, gate_b, torch.stack([p["mask"] for p in picks])

    def layout(self, drop: float, rng) -> torch.Tensor:
        """(B, K, F, h, w) the last batch's layouts, each zeroed with probability `drop` (rng: its own), so the
        model also draws what the layout planner cannot place."""
        lay = torch.stack([p["layout"] for p in self.picks])
        keep = torch.from_numpy(rng.random(len(lay)) >= drop).to(lay)
        return lay * keep[:, None, None, None, None]


def per_sample_loss(v: torch.Tensor, target: torch.Tensor, wgt: torch.Tensor) -> torch.Tensor:
    """v, target (B, C, F, h, w), wgt (B, F, h, w) -> (B,) each sample's weighted mean squared error."""
    return ((v.float() - target) ** 2 * wgt[:, None]).sum((1, 2, 3, 4)) / (wgt.sum((1, 2, 3)) * v.shape[1]).clamp_min(1)


def contrast_loss(model, x: torch.Tensor, tau: torch.Tensor, target: torch.Tensor, wgt: torch.Tensor,
                  pairs: list[tuple[torch.Tensor, torch.Tensor]], use: torch.Tensor, margin: float) -> torch.Tensor:
    """A hinge that makes the caption matter: for each used sample (use (B,) bool), its loss with one attribute
    swapped in the canonical caption must exceed its loss with the true one by the factor 1 + margin (the
    probe's ratio, engine/probe.py, trained on). x, target (B, C, F, h, w), tau (B, F), wgt (B, F, h, w) -> ()."""
    from engine.probe import padded
    if not use.any():
        return x.new_zeros(())
    losses = []
    for k in (0, 1):                                                    # the true caption, then the swapped one
        text, gate = padded([p[k] for p, u in zip(pairs, use) if u], x.shape[2])   # (B', L, D), (B', F, L)
        losses.append(per_sample_loss(model(x[use], tau[use], text, gate), target[use], wgt[use]))
    return F.relu(np.log1p(margin) + losses[0].log() - losses[1].log()).mean()


def pixel_loss(vae, x: torch.Tensor, tau: torch.Tensor, v: torch.Tensor, x0: torch.Tensor, wgt: torch.Tensor,
               use: torch.Tensor) -> torch.Tensor:
    """The loss in pixels (after Berrada et al.'s latent perceptual loss, with the decoder's output for its
    features): the denoised estimate x - tau v and the clean latents, both through the frozen decoder, their
    squared difference weighted as the latent loss is, over the used samples (use (B,) bool). Latent MSE barely
    sees a corner that is a fraction of one 8x8 cell. x, v, x0 (B, C, F, h, w), tau (B, F), wgt (B, F, h, w) -> ()."""
    if not use.any():
        return x.new_zeros(())
    y_hat = vae.decode_raw(vae.raw(x[use] - tau[use][:, None, :, None, None] * v[use]))     # (B', 3, N, H, W)
    with torch.no_grad():
        y = vae.decode_raw(vae.raw(x0[use]))
    tf, sf = vae.cfg.temporal_factor, vae.cfg.spatial_factor
    frames = torch.arange(x.shape[2], device=x.device).repeat_interleave(tf)[tf - 1:]       # pixel frame -> latent
    w = wgt[use][:, frames].repeat_interleave(sf, 2).repeat_interleave(sf, 3)              # (B', N, H, W)
    return ((y_hat.float() - y) ** 2 * w[:, None]).sum() / (w.sum() * 3).clamp_min(1)


def sample_t(rng, B: int, shift: float = 1.0) -> torch.Tensor:
    """(B,) logit-normal noise levels (SD3), with some uniform mass for the ends; shift > 1 moves
    them toward high noise (SD3's t' = s t / (1 + (s - 1) t)) from the same draws, so the data
    stream of an ablation stays the baseline's."""
    t = 1 / (1 + np.exp(-rng.normal(0, 1, B)))
    u = rng.random(B)
    t = np.where(rng.random(B) < 0.2, u, t)
    t = shift * t / (1 + (shift - 1) * t)
    return torch.from_numpy(t).float()


def force_i2v(levels: torch.Tensor, share: float, rng) -> torch.Tensor:
    """levels (B, F) -> (B, F) with a share of samples made image-to-video (first latent frame
    clean, the rest generated): then only the caption says where the object goes next.
    rng is the ablation's own, so the baseline's data stream is untouched."""
    if share <= 0:
        return levels
    pick = torch.from_numpy(rng.random(levels.shape[0]) < share).to(levels.device)
    i2v = torch.ones_like(levels)
    i2v[:, 0] = 0
    return torch.where(pick[:, None], i2v, levels)


def key_cuts(levels: torch.Tensor, picks: list[dict], share: float, rng) -> torch.Tensor:
    """levels (B, F) -> (B, F) with a share of the samples that have cuts to a new scene (their "cuts") given each
    cut's latent frame clean, as the sampler gives it its keyframe (rng is its own)."""
    if share <= 0:
        return levels
    out = levels.clone()
    for i, item in enumerate(picks):
        if item["cuts"] and rng.random() < share:
            out[i, item["cuts"]] = 0
    return out


def keyframe_now(share: float, rng) -> bool:
    """Whether this batch is keyframes (rng is its own, so a run without them draws the same clips)."""
    return share > 0 and rng.random() < share


def simple_now(step: int, until: int, share: float, rng) -> bool:
    """The curriculum's choice for one batch: every batch simple before `until`, then a `share` of them (rng is
    its own, so the data stream of a run without it is unchanged)."""
    return step < until or (share > 0 and rng.random() < share)


def parse_buckets(text: str | None) -> tuple[tuple[int, int, int, float], ...]:
    """'64x64x17@8' -> ((64, 64, 17, 8.0),): width x height x frames @ fps, several joined by commas."""
    out = []
    for item in (text or "").split(","):
        if item.strip():
            size, fps = item.strip().split("@")
            w, h, n = (int(v) for v in size.split("x"))
            out.append((w, h, n, float(fps)))
    return tuple(out)


def dit_config(args) -> DiTConfig:
    """The shipped recipe's config, changed only by the ablation flags given."""
    return dataclasses.replace(DIT_CONFIG, patch=args.patch or DIT_CONFIG.patch, pooled_text=args.pooled_text,
                               layout=SILHOUETTE if args.silhouette else GROUNDED if args.grounded
                               else CHANNELS if args.layout else 0)


def probe_now(ema, clips, encoder, run):
    """One log line: the prompt-reading probe (engine/probe.py) on the EMA weights at t = 0.9."""
    from engine import probe
    dev, t0 = next(ema.parameters()).device, time.time()
    ema.eval()
    with torch.no_grad():
        r = probe.run_probe(lambda x, t, txt, g: ema(x.to(dev), t.to(dev), txt.to(dev), g.to(dev)), encoder.encode,
                            clips, levels=(0.9,))
    ema.train()
    run.log(f"probe at step {run.step} (t=0.9, {len(clips)} clips): {probe.one_line(r)} ({time.time() - t0:.0f} s)")


def judge_now(ema, vae, encoder, run, n: int = 6):
    """Sample a few held-out prompts with the EMA weights and let the judge read them."""
    from engine.api import Settings
    from engine.backends.toy.backend import ToyBackend
    from engine.evaluate import EVAL_SET, evaluate_prompts
    t0 = time.time()
    backend = ToyBackend(vae, ema.eval(), encoder, device=next(ema.parameters()).device, bf16=False)
    try:
        res = evaluate_prompts(backend, Settings(steps=16, guidance=4.0), json.loads(EVAL_SET.read_text()), n, 2)
    except Exception as e:  # a check must never end hours of training
        run.log(f"judge at step {run.step} failed: {e.__class__.__name__}: {e}")
        return
    finally:
        ema.train()
    run.log(f"judge at step {run.step}: " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()) +
            f" ({time.time() - t0:.0f} s)")


def build_models(args, run: Run, dev) -> tuple[DiTConfig, DiT, torch.optim.Optimizer, DiT]:
    """Model, optimiser and EMA: resumed from the run's checkpoint, else from --init, else fresh."""
    cfg = dit_config(args)
    model, ema = DiT(cfg).to(dev), DiT(cfg).to(dev)
    state = run.resume()
    if args.init and not state:  # continue from shipped weights (a new machine has no checkpoint)
        from engine.probe import load_weights   # shipped .safetensors or a kept runs/*/ckpt_*.pt
        init = fit_layout(load_weights(args.init).state_dict(), cfg)   # a plain layout's, under a grounded one
        for m in (model, ema):   # weights without the pooled-text or layout path start it at zero (adaLN-Zero style)
            missing, unexpected = m.load_state_dict(init, strict=False)
            assert not unexpected and all(k.startswith(("text_pool.", "layout_in.")) for k in missing), (missing, unexpected)
        run.log(f"initialised from {args.init}")
    if args.lora:   # train a rank-r peft LoRA of the block linears alone; the base stays as it was
        from engine.backends.toy.adapter import lora_model
        model, ema = lora_model(model, args.lora), lora_model(ema, args.lora)
        if args.init_lora and not state:   # go on from a shipped LoRA (its rank must be --lora); ema copies it below
            from engine.backends.toy.adapter import load_lora
            load_lora(model, args.init_lora)
            run.log(f"LoRA initialised from {args.init_lora}")
    ema.load_state_dict(model.state_dict())
    new = {id(p) for n, p in model.named_parameters() if "layout_in" in n}   # a new input, from zero: its own rate
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in new], "scale": 1.0}]
    if new:
        groups.append({"params": [p for p in model.parameters() if id(p) in new], "scale": args.layout_lr})
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    if state:
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); ema.load_state_dict(state["ema"])
    return cfg, model, opt, ema


def train_dit(args):
    # Import everything the judge checks use now: a run lasts hours, and the source may change meanwhile.
    import engine.api, engine.evaluate, engine.judge, engine.ops, engine.presets, engine.video_io  # noqa: F401, E401
    from engine.backends.toy.backend import MiniLM, load_vae, toy_spec
    torch.manual_seed(args.seed)
    run = Run(args.run, args.minutes, args.max_steps)
    dev = torch.device(args.device)
    vae = load_vae(args.vae or ASSETS / "toy_vae.safetensors").eval().to(dev).requires_grad_(False)
    spec = toy_spec()
    encoder = MiniLM(dev)
    text = TextCache(encoder)
    empty = text("")
    cfg, model, opt, ema = build_models(args, run, dev)
    rng = np.random.default_rng(args.seed + 7919 * run.step)
    abl_rng = np.random.default_rng(args.seed + 104_729 + 7919 * run.step)
    share_rng = np.random.default_rng(args.seed + 15_485_863 + 7919 * run.step)
    key_rng = np.random.default_rng(args.seed + 32_452_843 + 7919 * run.step)
    contrast = tuple(a for a in (args.contrast or "").split(",") if a)
    pools = Pools(rng, vae, text, spec, args.fresh, parse_buckets(args.bucket), args.two_share,
                  np.random.default_rng(args.seed + 49_979_687 + 7919 * run.step), contrast, cfg.layout,
                  args.cut_keys > 0)
    cut_rng = np.random.default_rng(args.seed + 104_395_301 + 7919 * run.step)
    con_rng = np.random.default_rng(args.seed + 67_867_967 + 7919 * run.step)
    lay_rng = np.random.default_rng(args.seed + 86_028_121 + 7919 * run.step)
    budget = f"{args.max_steps} steps" if args.max_steps else f"{args.minutes} min"
    run.log(f"dit: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, budget {budget}, "
            f"batch {args.batch}, lr {args.lr}, object weight {args.object_weight}, t shift {args.t_shift}, "
            f"i2v share {args.i2v}, cut keys {args.cut_keys:g}, keyframe share {args.keyframe_share} (x{args.keyframe_batch} batch), simple until {args.simple_until} then {args.simple_share:g} of batches, two-object share {args.two_share:g}, layout {cfg.layout} channels (dropped {args.layout_drop:g}), bucket {args.bucket or 'all'}, config {dataclasses.asdict(cfg)}")
    t_last, smooth, seen, last_eval = time.time(), None, 0, time.time()
    probe_clips = None
    if args.probe_every:
        from engine import probe
        probe_clips = probe.make_clips(lambda p: vae.encode(p.to(dev)), spec, n=8)
    while run.progress < 1.0 and not (args.stop_at and run.step >= args.stop_at):
        key = keyframe_now(args.keyframe_share, key_rng)
        # a single frame has a ninth of a 17-frame clip's tokens: keyframe batches hold more samples
        x0, s, txt, gate, mask = pools.batch(args.batch * (args.keyframe_batch if key else 1), empty,
                                             simple_now(run.step, args.simple_until, args.simple_share, share_rng), key)
        B, F_ = s.shape
        if not key:   # a keyframe is the first frame: there is nothing to keep
            s = key_cuts(force_i2v(s, args.i2v, abl_rng), pools.picks, args.cut_keys, cut_rng)
        t = sample_t(rng, B, args.t_shift).to(dev)
        tau = torch.minimum(t[:, None], s)                                  # (B, F) per-frame level
        eps = torch.randn_like(x0)
        tb = tau[:, None, :, None, None]
        x = (1 - tb) * x0 + tb * eps
        for g in opt.param_groups:
            g["lr"] = run.lr(args.lr, warmup=300) * g["scale"]
        lay = {"layout": pools.layout(args.layout_drop, lay_rng).to(dev)} if cfg.layout else {}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            v = model(x, tau, txt, gate, **lay)
        # Frozen frames carry no loss; object cells weigh more, since flat background dominates the mean.
        wgt = (tau > 0).float()[:, :, None, None] * (1 + args.object_weight * mask)        # (B, F, h, w)
        loss = ((v.float() - (eps - x0)) ** 2 * wgt[:, None]).sum() / (wgt.sum() * x0.shape[1]).clamp_min(1)
        if args.contrast:   # at high noise, where a caption word decides what is drawn
            pairs = [p["pairs"][int(con_rng.integers(len(p["pairs"])))] if p["pairs"] else (empty, empty)
                     for p in pools.picks]
            use = (t >= 0.5) & torch.tensor([bool(p["pairs"]) for p in pools.picks], device=t.device)
            loss = loss + args.contrast_weight * contrast_loss(model, x, tau, eps - x0, wgt, pairs, use,
                                                               args.contrast_margin)
        if args.pixel_weight:   # at low noise, where edges and corners are drawn
            loss = loss + args.pixel_weight * pixel_loss(vae, x, tau, v, x0, wgt, t <= args.pixel_below)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + run.step) / (10 + run.step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        run.step += 1
        seen += B
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        if run.step % 25 == 0:
            rate = seen / (time.time() - t_last)
            t_last, seen = time.time(), 0
            run.log(f"dit step {run.step} loss {smooth:.4f} lr {run.lr(args.lr, 300):.2e} {rate:.1f} clips/s "
                    f"{100 * run.progress:.0f}%")
        run.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict(),
                  "config": dataclasses.asdict(cfg)})
        if args.keep_every and run.step % args.keep_every == 0:
            run.keep(ema.state_dict(), dataclasses.asdict(cfg))
        if args.probe_every and run.step % args.probe_every == 0:
            probe_now(ema, probe_clips, encoder, run)
        if time.time() - last_eval > args.eval_every * 60:
            judge_now(ema, vae, encoder, run)
            last_eval = time.time()
    run.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict(),
                  "config": dataclasses.asdict(cfg)}, force=True)
    run.log(f"dit {'done' if run.progress >= 1 else 'paused (resumable)'}: step {run.step}")
    if args.export:
        meta = {"config": json.dumps(dataclasses.asdict(cfg)), "steps": str(run.step)}
        if args.keyframe_share:   # trained on single frames: engine.api draws its keyframe pass over one latent frame
            meta["keyframe_frames"] = "1"
        if args.lora:             # the LoRA alone, as the adapter stores it (assets/toy_dit_key.safetensors)
            from engine.backends.toy.adapter import lora_tensors
            from engine.backends.toy.backend import KEY_NAME, write_weights
            tensors, lmeta = lora_tensors(ema)
            write_weights(tensors, {**meta, **lmeta}, args.out or ASSETS / KEY_NAME)
        else:
            export(ema, args.out or ASSETS / "toy_dit.safetensors", meta)
