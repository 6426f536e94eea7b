"""The `ltx` backend: LTX-Video through diffusers' own model classes (issue 5).

Built on `LTXVideoTransformer3DModel`, `AutoencoderKLLTXVideo`, the T5 encoder + tokenizer
and the `FlowMatchEulerDiscreteScheduler` config of an `LTXPipeline`, so that a text-only
timeline sampled by the engine gives the same frames as `LTXPipeline(...)` on the same
components, same initial latents, sigmas, guidance and steps (tests/test_ltx.py).

How the engine's ideas map onto LTX (each matches diffusers' pipeline_ltx.py / _condition.py):

- Latents. The engine holds (B, C, F, h, w) latents normalised as
  `LTXPipeline._normalize_latents` does: (z - latents_mean) * scaling_factor / latents_std.
  They are packed into LTX's token sequence (B, S, C*pt*p*p), S = F/pt * h/p * w/p frame-major,
  inside `denoise` and unpacked on the way out; `encode_video` / `decode` (de)normalise.
- Velocity. diffusers' flow-match scheduler steps x + (sigma_next - sigma) * model_output
  with x_sigma = (1 - sigma) x0 + sigma eps, so the model output already is the engine's
  v = eps - x0: it is returned as is.
- Timesteps. LTX takes `timestep` = sigma * 1000 (the scheduler's `timesteps`), one per
  token: the engine's per-frame t (B, F) (t_f = min(t, start_level[f]), as
  LTXConditionPipeline does) expands to the tokens of each latent frame. When every frame
  shares one t (text-only timelines) one timestep per sample is passed, as LTXPipeline does.
- Rope. num_frames / height / width of the latent grid and rope_interpolation_scale =
  (temporal_factor / fps, spatial_factor, spatial_factor), exactly as LTXPipeline passes them.
- Gated cross-attention. The transformer accepts `encoder_attention_mask` as an additive
  bias; the engine's gate (B, F, L) becomes log(gate) (-inf where closed, padding included)
  expanded to the tokens of each frame: (B, S, L). When all frames see the same gate the
  bias is (B, 1, L), the shape LTXPipeline's 2-D padding mask becomes.
- Schedule. `sigmas(steps, n_tokens)` is LTXPipeline's: linspace(1, 1/steps) through the
  scheduler's own dynamic shift with mu = calculate_shift(n_tokens, ...) (and its terminal
  stretch when configured).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from engine.backends import diffusers_parts as parts
from engine.backends.base import LatentSpec
from engine.params import InputError

# The parts of a diffusers LTX folder the backend loads (model_index.json names them).
def default_model_path() -> str | None:
    return parts.default_model_path("ltx")


def check_folder(path) -> Path:
    return parts.check_folder(path, "ltx", "LTX-Video")


def ltx_spec(cfg, vae) -> LatentSpec:
    """The latent grid of a transformer config and a VAE: tokens are patch x patch cells of the latent."""
    sf, tf = vae.spatial_compression_ratio, vae.temporal_compression_ratio
    return LatentSpec(channels=cfg.in_channels, temporal_factor=tf, spatial_factor=sf, causal_first=True,
                      size_multiple=sf * cfg.patch_size, per_token_timestep=True, min_side=sf * cfg.patch_size)


class LTXBackend(parts.DiffusersParts):
    name = "ltx"

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler_config: dict, device="cpu",
                 dtype=torch.float32, offload: bool = False, max_sequence_length: int = 128,
                 frame_rate: float = 25, decode_timestep: float = 0.0, decode_noise_scale: float | None = None,
                 vae_tiling: bool = False, vae_slicing: bool = False, trim_padding: bool = True,
                 like: str = "pipeline", memory=None):
        self._place_parts(transformer, vae, text_encoder, tokenizer, scheduler_config, device, dtype, memory, offload,
                          vae_tiling, vae_slicing)
        self.max_sequence_length = max_sequence_length
        self.frame_rate = frame_rate              # rope scales time by it (LTXPipeline's default: 25)
        self.decode_timestep = decode_timestep    # LTXPipeline's decode_timestep / decode_noise_scale
        self.decode_noise_scale = decode_noise_scale
        self.trim_padding = trim_padding          # drop T5's padding tokens after encoding (closed anyway)
        # Which diffusers pipeline to reproduce where they differ: "pipeline" (LTXPipeline, text to video) or
        # "condition" (LTXConditionPipeline: T5 sees the padding mask; rope knows the causal first frame).
        assert like in ("pipeline", "condition"), f"like: 'pipeline' or 'condition', not {like!r}"
        self.like = like
        cfg = self.transformer.config
        self.patch, self.patch_t = cfg.patch_size, cfg.patch_size_t
        self.spec = ltx_spec(cfg, vae)
        self.memo = parts.PerPlan()  # the gate's bias, computed once a plan (no host sync per step)
        self._install_memory()

    # ------------------------------------------------------------------ construction
    @classmethod
    def folder(cls, path=None) -> Path:
        """The model folder given, else the configured one, checked (one line naming what is missing)."""
        return check_folder(path or default_model_path())

    @classmethod
    def video_classes(cls) -> tuple:
        """diffusers' classes of this model's transformer and video VAE."""
        from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
        return LTXVideoTransformer3DModel, AutoencoderKLLTXVideo

    @classmethod
    def read_spec(cls, path=None, model: str | None = None, **_) -> LatentSpec:
        """The latent spec of a model folder from its configs alone: no weights are read."""
        transformer, vae = parts.meta_parts(cls.folder(path or model), *cls.video_classes())
        return ltx_spec(transformer.config, vae)

    @classmethod
    def from_pipe(cls, pipe, **opts) -> "LTXBackend":
        """Wrap an existing LTXPipeline's components (shared, not copied)."""
        device = opts.pop("device", pipe.transformer.device)
        dtype = opts.pop("dtype", pipe.transformer.dtype)
        return cls(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler.config,
                   device=device, dtype=dtype, **opts)

    @classmethod
    def load(cls, path=None, device: str = "cpu", dtype=torch.float32, offload: bool = False,
             model: str | None = None, **opts) -> "LTXBackend":
        """From a local folder in diffusers' layout; nothing is downloaded (local_files_only)."""
        folder = check_folder(path or model or default_model_path())
        from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
        from transformers import AutoTokenizer, T5EncoderModel
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        kw = {"local_files_only": True, "torch_dtype": dtype}
        try:
            transformer = LTXVideoTransformer3DModel.from_pretrained(folder, subfolder="transformer", **kw)
            vae = AutoencoderKLLTXVideo.from_pretrained(folder, subfolder="vae", **kw)
            text_encoder = T5EncoderModel.from_pretrained(folder / "text_encoder", **kw)
            tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                        local_files_only=True)
        except (OSError, ValueError, KeyError) as e:  # a damaged config or weights file
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise InputError(f"model: {folder} could not be loaded ({first[:200]})") from None
        return cls(transformer, vae, text_encoder, tokenizer, scheduler.config, device=device, dtype=dtype,
                   offload=offload, **opts)

    def pipeline_view(self):
        """LTXPipeline around this backend's modules: diffusers' LTX LoRA loader works on it."""
        from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline
        return LTXPipeline(FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config), self.vae,
                           self.text_encoder, self.tokenizer, self.transformer)

    # ------------------------------------------------------------------ latents <-> normalised latents
    def _stats(self, like: torch.Tensor):
        """latents_mean, latents_std as (1, C, 1, 1, 1) on like's device/dtype; the scaling factor."""
        mean = self.vae.latents_mean.view(1, -1, 1, 1, 1).to(like.device, like.dtype)
        std = self.vae.latents_std.view(1, -1, 1, 1, 1).to(like.device, like.dtype)
        return mean, std, self.vae.config.scaling_factor

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) raw VAE latents -> normalised (LTXPipeline._normalize_latents)."""
        mean, std, s = self._stats(z)
        return (z - mean) * s / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) normalised -> raw VAE latents (LTXPipeline._denormalize_latents)."""
        mean, std, s = self._stats(z)
        return z * std / s + mean

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) -> tokens (B, S, C*pt*p*p), S = F/pt * h/p * w/p, frame-major (as _pack_latents)."""
        p, pt = self.patch, self.patch_t
        return rearrange(x, "b c (f pt) (h p) (w q) -> b (f h w) (c pt p q)", pt=pt, p=p, q=p)

    def unpack(self, x: torch.Tensor, F_: int, h: int, w: int) -> torch.Tensor:
        """tokens (B, S, C*pt*p*p) -> (B, C, F, h, w) for a latent grid F x h x w (LTXPipeline._unpack_latents)."""
        p, pt = self.patch, self.patch_t
        return rearrange(x, "b (f h w) (c pt p q) -> b c (f pt) (h p) (w q)", f=F_ // pt, h=h // p, w=w // p,
                         pt=pt, p=p, q=p)

    # ------------------------------------------------------------------ the four calls
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each prompt -> (tokens (L, D), mask (L,) bool), LTXPipeline._get_t5_prompt_embeds' way.

        T5 runs on the max-length padded ids without an attention mask, as LTXPipeline does (with it, as
        LTXConditionPipeline does, when like="condition"), so the real tokens' embeddings match; the trailing
        padding is then dropped (trim_padding): the pipelines mask it out of cross-attention anyway.
        "" keeps at least its end-of-sequence token.
        """
        enc = self.tokenizer(prompts, padding="max_length", max_length=self.max_sequence_length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        device = self.device
        mask = enc.attention_mask.to(device) if self.like == "condition" else None
        hidden = self.text_encoder(enc.input_ids.to(device), attention_mask=mask)[0].to(self.dtype)  # (P, Lmax, D)
        out = []
        for h, m in zip(hidden, enc.attention_mask.bool().to(device)):
            n = max(1, int(m.sum())) if self.trim_padding else len(m)
            out.append((h[:n], m[:n].clone()))
        return out

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised (B, C, F, h, w) -> pixels (B, 3, N, h*sf, w*sf) in [-1, 1].

        With `timestep_conditioning` VAEs (LTX 0.9.1+) the latents get decode_noise_scale of noise and the
        decoder is told decode_timestep, exactly as LTXPipeline does (noise from `generator`, seed 0 if None).
        """
        z = self.denormalize(latents.to(self.device, self.dtype))
        timestep = None
        if self.vae.config.timestep_conditioning:
            B = z.shape[0]
            g = generator or torch.Generator(device=z.device).manual_seed(0)
            noise = torch.randn(z.shape, generator=g, device=z.device, dtype=z.dtype)
            scale = self.decode_timestep if self.decode_noise_scale is None else self.decode_noise_scale
            timestep = torch.tensor([self.decode_timestep] * B, device=z.device, dtype=z.dtype)
            scale = torch.tensor([scale] * B, device=z.device, dtype=z.dtype)[:, None, None, None, None]
            z = (1 - scale) * z + scale * noise
        video = self.vae.decode(z, timestep, return_dict=False)[0]
        return video.float().clamp(-1, 1)

    def cross_attention_bias(self, gate: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """gate (B, F, L) -> additive bias (B, 1, L) when every frame sees the same gate, else (B, S, L).

        log(gate): 0 where open, log g for soft weights, -inf where closed (padding included);
        expanded to the h/p * w/p tokens of each latent frame (frame-major, the pack order).
        """
        from engine.attention import gate_bias
        g = gate[:, ::self.patch_t]                                            # (B, F/pt, L)
        if bool((g == g[:, :1]).all()):
            return gate_bias(g[:, :1], 1)[:, 0]                                # (B, 1, L)
        return gate_bias(g, (h // self.patch) * (w // self.patch))[:, 0]     # (B, S, L)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F) in [0, 1], text (B', L, D), gate (B', F, L) -> velocity (B, C, F, h, w).

        B' may be 1 (shared by every sample) or B.
        """
        B, C, F_, h, w = x.shape
        dev, dt = self.device, self.dtype
        tokens = self.pack(x.to(dev, dt))                                     # (B, S, C*pt*p*p)
        text = text.to(dev, dt).expand(B, -1, -1)                             # (B, L, D)
        bias = self.memo.get(gate, lambda: self.cross_attention_bias(gate.to(dev, torch.float32), h, w).to(dt),
                             "bias", h, w).expand(B, -1, -1)                  # (B, 1|S, L)
        tt = t.to(dev, torch.float32)[:, ::self.patch_t]                      # (B, F/pt)
        # Per plan, not per step (a host sync): t_f = min(t, s_f) with t falling, so frames that share a level
        # at the plan's first (highest) t share it at every later one; frames that differ may later agree,
        # and a timestep per token stays right for them.
        if self.memo.get(gate, lambda: bool((tt == tt[:, :1]).all()), "uniform t"):
            timestep = tt[:, 0] * 1000.0                                      # (B,): LTXPipeline's t
        else:  # one timestep per token: each latent frame's level on all of its tokens
            per_frame = (h // self.patch) * (w // self.patch)
            timestep = (tt * 1000.0).repeat_interleave(per_frame, dim=1)      # (B, S)
        out = self.run(self.transformer, gate, hidden_states=tokens, encoder_hidden_states=text, timestep=timestep,
                       encoder_attention_mask=bias, **self.rope_args(B, F_, h, w))
        return self.unpack(out.float(), F_ // self.patch_t, h // self.patch, w // self.patch)

    def rope_args(self, B: int, F_: int, h: int, w: int) -> dict:
        """The transformer's rope inputs for a latent grid F x h x w, as each diffusers pipeline passes them.

        "pipeline" (LTXPipeline): grid sizes + rope_interpolation_scale = (tf / fps, sf, sf), so latent frame
        f sits at pixel time f * tf / fps. "condition" (LTXConditionPipeline): video_coords (B, 3, S) with the
        causal first frame accounted for: latent frame f starts at pixel frame max(0, f * tf + 1 - tf).
        """
        tf, sf, p, pt = self.spec.temporal_factor, self.spec.spatial_factor, self.patch, self.patch_t
        if self.like == "pipeline":
            return dict(num_frames=F_ // pt, height=h // p, width=w // p,
                        rope_interpolation_scale=(tf / self.frame_rate, sf, sf))
        grid = torch.stack(torch.meshgrid(torch.arange(0, F_, pt), torch.arange(0, h, p), torch.arange(0, w, p),
                                          indexing="ij")).reshape(1, 3, -1).repeat(B, 1, 1)     # (B, 3, S)
        coords = grid * torch.tensor([tf, sf, sf])[None, :, None]
        coords[:, 0] = (coords[:, 0] + 1 - tf).clamp(min=0)
        coords = coords.float()
        coords[:, 0] = coords[:, 0] * (1.0 / self.frame_rate)
        return dict(video_coords=coords.to(self.device))

    # ------------------------------------------------------------------ schedule
    def _mu(self, n_tokens: int) -> float:
        """LTXPipeline's calculate_shift(video_sequence_length) from the scheduler config."""
        c = self.scheduler_config
        base_len, max_len = c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096)
        base, top = c.get("base_shift", 0.5), c.get("max_shift", 1.15)
        m = (top - base) / (max_len - base_len)
        return n_tokens * m + (base - m * base_len)

    def sigmas(self, steps: int, n_tokens: int) -> torch.Tensor:
        """(steps + 1,) float32 noise levels from 1 to 0: the scheduler's own, as LTXPipeline sets them.

        n_tokens is the latent grid's F * h * w (LTXPipeline's video_sequence_length).
        """
        from diffusers import FlowMatchEulerDiscreteScheduler
        sched = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        sig = np.linspace(1.0, 1 / steps, steps)
        if sched.config.use_dynamic_shifting:
            sched.set_timesteps(sigmas=sig, mu=self._mu(n_tokens))
        else:
            sched.set_timesteps(sigmas=sig)
        return sched.sigmas.float().cpu()

    def shift(self, n_tokens: int) -> float:
        """The SD3-style shift equivalent to the scheduler's exponential dynamic shift: exp(mu)."""
        import math
        if not self.scheduler_config.get("use_dynamic_shifting", False):
            return float(self.scheduler_config.get("shift", 1.0))
        return math.exp(self._mu(n_tokens))
