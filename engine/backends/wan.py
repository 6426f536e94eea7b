"""The `wan` backend: Wan 2.1 (text to video) through diffusers' own model classes (issue 5).

Built on `WanTransformer3DModel`, `AutoencoderKLWan`, the UMT5 encoder + tokenizer and the scheduler
config of a `WanPipeline`, so that a text-only timeline sampled by the engine gives the same frames as
`WanPipeline(...)` on the same components, same initial latents, sigmas, guidance and steps
(tests/test_wan.py).

How the engine's ideas map onto Wan (each matches diffusers' pipeline_wan.py):

- Latents. The engine holds (B, C, F, h, w) latents normalised as WanPipeline un-normalises them before
  decoding: z_norm = (z - latents_mean) / latents_std (both lists in the VAE config). Wan's transformer
  takes the 5-D grid itself (it patches with a Conv3d, tokens frame-major), so nothing is packed here.
- Velocity. diffusers' flow-match scheduler steps x + (sigma_next - sigma) * model_output with
  x_sigma = (1 - sigma) x0 + sigma eps, so the model output already is the engine's v = eps - x0: it is
  returned as is.
- Timesteps. Wan 2.1 takes one timestep per sample, `timestep` = sigma * num_train_timesteps (the
  scheduler's `timesteps`). Frame injection / partial noise therefore use the engine's replacement scheme
  (`per_token_timestep=False`): the sampler gives every frame the same t, and `denoise` passes it once.
- Gated cross-attention. Wan's cross-attention has no mask. `GatedWanCrossAttnProcessor`, installed with
  `set_attn_processor` on the `attn2` layers only (self-attention keeps diffusers' processor), adds the
  engine's gate as a bias: log(gate), -inf where closed, expanded to the tokens of each latent frame.
  `denoise` hands it the bias for the call (`_gated`); with every gate open it takes diffusers' own code
  path (no mask at all), so conformance is exact.
- Text. UMT5 as `WanPipeline._get_t5_prompt_embeds`: the cleaned prompt padded to max_sequence_length,
  encoded with its attention mask, the padding positions then zeroed. Wan attends to those zero tokens
  (they are not masked in WanPipeline), so they are kept and open by default (`trim_padding=False`).
  In a storyboard each text card brings its own 512 rows and the gate closes the other cards' rows, so a
  frame attends to exactly the 512 rows WanPipeline would give its card's prompt: the context the model
  was trained on. Trimming would shift that context; the cost of keeping it, cross-attention keys that
  grow by 512 a card, is small beside self-attention over the video's tokens.
- Guidance. The conditional and unconditional branches run as two calls (`cfg_batch = False`), as in
  WanPipeline, so peak memory is the pipeline's; LTX batches them, as LTXPipeline does.
- Schedule. `sigmas(steps, n_tokens)` is the pipeline scheduler's own `set_timesteps(steps)` (Wan's fixed
  `shift` / `flow_shift`; no dynamic shift). A multistep scheduler (UniPC, Wan's default) gives its sigmas
  to the engine's own solver: only a flow-match Euler scheduler reproduces WanPipeline step for step.
- Wan 2.2 TI2V-5B (`wan22-5b`, WanPipeline with `expand_timesteps`): the model was trained with a timestep
  per token, so `per_token_timestep=True` and `denoise` passes (B, S) = each latent frame's level on its
  h/ph * w/pw tokens. The engine's injection (t_f = min(t, start_level[f])) is then exactly what
  WanImageToVideoPipeline does for its first frame (mask 0 -> timestep 0, latents replaced by the condition):
  an image card at 0 with strength 1 conforms to it, and any other frame index, strength or video card uses
  the same mechanism, a per-frame level the model was trained to read.
- Wan 2.2 A14B (`wan22-14b`): two experts; `transformer` denoises while the step's timestep is >=
  boundary_ratio * num_train_timesteps and `transformer_2` after, WanPipeline's rule. The step's timestep is
  the highest frame level (every frame shares it in replacement mode). One guidance scale for both experts
  (WanPipeline's guidance_scale_2 defaults to it).
- Image-conditioned Wan 2.1 / A14B i2v (added k/v projections or latents concatenated on channels) is refused
  with a one-line InputError.
- Loading. diffusers' loader needs `accelerate` for the transformer's float32-kept modules; without it the
  transformer is built from its config and its weights read directly (`_from_pretrained`), same result.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.backends import diffusers_parts as parts
from engine.backends.base import LatentSpec
from engine.params import InputError

@dataclass(frozen=True)
class WanVariant:
    """A backend name and what its folder's model_index.json must say (WanPipeline's config)."""
    name: str
    title: str
    expand_timesteps: bool   # a timestep per token (TI2V-5B)
    two_experts: bool        # transformer_2 switched at boundary_ratio (A14B)


VARIANTS = {v.name: v for v in (WanVariant("wan", "Wan 2.1 T2V", False, False),
                                WanVariant("wan22-5b", "Wan 2.2 TI2V-5B", True, False),
                                WanVariant("wan22-14b", "Wan 2.2 T2V-A14B", False, True))}


def default_model_path(name: str = "wan") -> str | None:
    return parts.default_model_path(name)


def check_folder(path, name: str = "wan") -> Path:
    """The folder of a variant, or a one-line InputError naming the missing / mismatched file and the backend.

    model_index.json is read first: a folder of another variant is named as such before any missing part.
    """
    v = VARIANTS[name]
    index = Path(path).expanduser() / "model_index.json" if path is not None else None
    if index is not None and index.is_file():
        try:
            cfg = json.loads(index.read_text())
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"model: {index} is not valid JSON (the {name} backend reads expand_timesteps and "
                             f"boundary_ratio from it)") from None
        found = next((u for u in VARIANTS.values() if u.expand_timesteps == bool(cfg.get("expand_timesteps"))
                      and u.two_experts == (cfg.get("boundary_ratio") is not None)), None)
        if found is not v:
            what = f"a {found.title} folder: use the {found.name} backend" if found else "no variant cinepatch runs"
            raise InputError(f"model: {index} says expand_timesteps={cfg.get('expand_timesteps')}, boundary_ratio="
                             f"{cfg.get('boundary_ratio')} ({what}); the {name} backend needs a {v.title} folder")
    return parts.check_folder(path, name, v.title, extra=("transformer_2",) if v.two_experts else ())


def wan_spec(cfg, vae_cfg, per_token: bool = False) -> LatentSpec:
    """The latent grid of a transformer config and a VAE config; per_token: a timestep per token (Wan 2.2 5B)."""
    sf, tf = vae_cfg.scale_factor_spatial, vae_cfg.scale_factor_temporal
    side = sf * max(tuple(cfg.patch_size)[1:])
    return LatentSpec(channels=cfg.in_channels, temporal_factor=tf, spatial_factor=sf, causal_first=True,
                      size_multiple=side, per_token_timestep=per_token, min_side=side)


def scheduler_config(scheduler) -> dict:
    """The scheduler's config with its class name (a config dict alone does not say which class made it)."""
    return {**scheduler.config, "_class_name": type(scheduler).__name__}


def _from_pretrained(model_cls, sub: Path, dtype):
    """A diffusers model from a local subfolder, offline.

    WanTransformer3DModel keeps some modules in float32 (`_keep_in_fp32_modules`), which diffusers' loader
    only supports with `accelerate` installed; without it the model is built from its config and the
    safetensors / bin weights are loaded here, with the same float32 modules kept.
    """
    import importlib.util
    if importlib.util.find_spec("accelerate") is not None or not model_cls._keep_in_fp32_modules:
        return parts.aligned(model_cls.from_pretrained(sub, local_files_only=True, torch_dtype=dtype))
    from safetensors.torch import load_file
    model = model_cls.from_config(model_cls.load_config(sub, local_files_only=True))
    files = sorted(sub.glob("*.safetensors")) or sorted(sub.glob("*.bin"))
    state = {}
    for f in files:
        try:
            state.update(load_file(f) if f.suffix == ".safetensors" else torch.load(f, map_location="cpu",
                                                                                  weights_only=True))
        except Exception as e:  # SafetensorError / unpickling errors: a damaged file, said in one line
            raise OSError(f"{sub.name}/{f.name}: {str(e).strip().splitlines()[0] if str(e).strip() else e}") from None
    ignore = tuple(model_cls._keys_to_ignore_on_load_unexpected or ())
    state = {k: v for k, v in state.items() if not any(i in k for i in ignore)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"{sub.name} weights do not match its config (missing {len(missing)}, "
                       f"unexpected {len(unexpected)})")
    model = model.to(dtype)
    keep = model_cls._keep_in_fp32_modules
    for name, param in model.named_parameters():  # as diffusers: a module name anywhere in the parameter's path
        if any(m in name.split(".") for m in keep):
            param.data = param.data.float()
    return model


# The cross-attention bias of the transformer call under way: None (every text token open to every video token)
# or (B, 1, S or 1, L) with 0 / log g / -inf, S the video tokens frame-major. A context variable, not an
# attribute: any installed processor instance sees it (backends may share one transformer), and a call in
# another thread (the studio) never sees this one's bias.
_BIAS: ContextVar[torch.Tensor | None] = ContextVar("wan_cross_attention_bias", default=None)


class GatedWanCrossAttnProcessor:
    """diffusers' WanAttnProcessor for cross-attention (text only), plus the engine's gate as an additive bias.

    With no bias set it runs diffusers' exact code path (no mask), so conformance is exact.
    """
    _attention_backend = None
    _parallel_config = None

    @property
    def bias(self) -> torch.Tensor | None:
        return _BIAS.get()

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, rotary_emb=None) -> torch.Tensor:
        """hidden_states (B, S, D), encoder_hidden_states (B, L, D) -> (B, S, D)."""
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        from engine.attention import gated_attention
        assert attn.add_k_proj is None, "image-conditioned (i2v) Wan cross-attention is not supported"
        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        query = query.unflatten(2, (attn.heads, -1))                       # (B, S, H, d)
        key = key.unflatten(2, (attn.heads, -1))                           # (B, L, H, d)
        value = value.unflatten(2, (attn.heads, -1))
        if self.bias is None and attention_mask is None:
            # all open: exactly what WanAttnProcessor runs (same dispatch, same backend)
            out = dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                        backend=self._attention_backend, parallel_config=None)
        else:
            # a bias needs SDPA with attn_mask (flash-style backends take no mask): heads first and back
            bias = self.bias if attention_mask is None else attention_mask
            q, k, v = (x.permute(0, 2, 1, 3) for x in (query, key, value))  # (B, H, S|L, d)
            out = gated_attention(q, k, v, bias).permute(0, 2, 1, 3)       # (B, S, H, d)
        out = out.flatten(2, 3).type_as(query)                              # (B, S, H*d)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


class WanBackend(parts.DiffusersParts):
    name = "wan"

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler_config: dict, device="cpu",
                 dtype=torch.float32, offload: bool = False, max_sequence_length: int = 512,
                 vae_tiling: bool = False, vae_slicing: bool = False, trim_padding: bool = False,
                 transformer_2=None, boundary_ratio: float | None = None, expand_timesteps: bool = False,
                 memory=None):
        self.name = next(v.name for v in VARIANTS.values()
                         if (v.expand_timesteps, v.two_experts) == (expand_timesteps, transformer_2 is not None))
        for t in (transformer, transformer_2):
            if t is not None and (getattr(t.config, "added_kv_proj_dim", None) is not None or getattr(
                    t.config, "image_dim", None) is not None or t.config.in_channels != vae.config.z_dim):
                raise InputError(f"model: this Wan transformer is image-conditioned (i2v); the {self.name} backend "
                                 f"needs a text-to-video (t2v or ti2v) model")
        if (transformer_2 is None) != (boundary_ratio is None):
            raise InputError("model: transformer_2 and boundary_ratio go together (Wan 2.2 A14B's two experts)")
        self._place_parts(transformer, vae, text_encoder, tokenizer, scheduler_config, device, dtype, memory, offload,
                          vae_tiling, vae_slicing)
        # Wan 2.2 A14B: the low-noise expert takes over below boundary_ratio * num_train_timesteps
        self.transformer_2 = None if transformer_2 is None else self._place(transformer_2, dtype, self.home).eval()
        self.boundary_ratio = boundary_ratio
        self.expand_timesteps = expand_timesteps  # Wan 2.2 TI2V-5B: a timestep per token
        self.max_sequence_length = max_sequence_length  # WanPipeline.__call__'s default: 512
        # WanPipeline keeps the zero-filled padding up to max_sequence_length and Wan attends to it; trimming
        # (keeping the end-of-sequence token) saves memory but departs from the pipeline
        self.trim_padding = trim_padding
        # WanPipeline runs guidance's two branches one after the other: half the activations at peak
        self.cfg_batch = False
        self.patch = tuple(self.transformer.config.patch_size)                # (pt, ph, pw)
        self.spec = wan_spec(self.transformer.config, self.vae.config, per_token=expand_timesteps)
        # the gate reaches cross-attention through one processor shared by every block's attn2 (bias: _BIAS)
        self.processor = GatedWanCrossAttnProcessor()
        self.install_processor()
        self.memo = parts.PerPlan()  # the gate's bias, computed once a plan (no host sync per step)
        self._install_memory()

    def install_processor(self) -> None:
        """Our processor on every block's cross-attention (attn2), diffusers' own everywhere else."""
        for model in self.experts:
            procs = {name: (self.processor if name.endswith("attn2.processor") else proc)
                     for name, proc in model.attn_processors.items()}
            model.set_attn_processor(procs)

    @contextmanager
    def _gated(self, bias: torch.Tensor | None):
        """The cross-attention bias for one transformer call; cleared after, whatever happens."""
        if not all(isinstance(b.attn2.processor, GatedWanCrossAttnProcessor) for m in self.experts for b in m.blocks):
            self.install_processor()  # someone put other processors on the shared transformer since
        token = _BIAS.set(bias)
        try:
            yield
        finally:
            _BIAS.reset(token)

    # ------------------------------------------------------------------ construction
    @classmethod
    def read_spec(cls, path=None, model: str | None = None, variant: str = "wan", **_) -> LatentSpec:
        """The latent spec of a model folder from its configs alone: no weights are read."""
        folder = check_folder(path or model or default_model_path(variant), variant)
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        transformer, vae = parts.meta_parts(folder, WanTransformer3DModel, AutoencoderKLWan)
        return wan_spec(transformer.config, vae.config, per_token=VARIANTS[variant].expand_timesteps)

    @classmethod
    def from_pipe(cls, pipe, **opts) -> "WanBackend":
        """Wrap an existing WanPipeline's components (shared, not copied), its Wan 2.2 config included."""
        device = opts.pop("device", pipe.transformer.device)
        dtype = opts.pop("dtype", pipe.transformer.dtype)
        return cls(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.tokenizer, scheduler_config(pipe.scheduler),
                   device=device, dtype=dtype, transformer_2=getattr(pipe, "transformer_2", None),
                   boundary_ratio=pipe.config.get("boundary_ratio"),
                   expand_timesteps=bool(pipe.config.get("expand_timesteps", False)), **opts)

    @classmethod
    def load(cls, path=None, device: str = "cpu", dtype=torch.float32, offload: bool = False,
             model: str | None = None, variant: str = "wan", **opts) -> "WanBackend":
        """From a local folder in diffusers' layout; nothing is downloaded (local_files_only)."""
        folder = check_folder(path or model or default_model_path(variant), variant)
        import diffusers
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5EncoderModel
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        kw = {"local_files_only": True, "torch_dtype": dtype}
        index = json.loads((folder / "model_index.json").read_text()) if (folder / "model_index.json").exists() else {}
        try:
            transformer = _from_pretrained(WanTransformer3DModel, folder / "transformer", dtype)
            transformer_2 = _from_pretrained(WanTransformer3DModel, folder / "transformer_2", dtype) \
                if VARIANTS[variant].two_experts else None
            vae = _from_pretrained(AutoencoderKLWan, folder / "vae", dtype)
            text_encoder = UMT5EncoderModel.from_pretrained(folder / "text_encoder", **kw)
            tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
            sched_cls = diffusers.FlowMatchEulerDiscreteScheduler
            cfg = sched_cls.load_config(folder, subfolder="scheduler", local_files_only=True)
            sched_cls = getattr(diffusers, cfg.get("_class_name", ""), sched_cls)  # Wan ships UniPC
            scheduler = sched_cls.from_config(cfg)
        except (OSError, ValueError, KeyError, RuntimeError) as e:  # a damaged config or weights file
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise InputError(f"model: {folder} could not be loaded by the {variant} backend ({first[:200]})") from None
        return cls(transformer, vae, text_encoder, tokenizer, scheduler_config(scheduler), device=device,
                   dtype=dtype, offload=offload, transformer_2=transformer_2,
                   boundary_ratio=index.get("boundary_ratio"), expand_timesteps=bool(index.get("expand_timesteps")),
                   **opts)

    def pipeline_view(self):
        """WanPipeline around this backend's modules: diffusers' Wan LoRA loader works on it."""
        from diffusers import WanPipeline
        return WanPipeline(self.tokenizer, self.text_encoder, self.vae, self._scheduler(), self.transformer,
                           self.transformer_2, self.boundary_ratio, self.expand_timesteps)

    # ------------------------------------------------------------------ latents <-> normalised latents
    def _stats(self, like: torch.Tensor):
        """latents_mean and 1 / latents_std as (1, C, 1, 1, 1) on like's device/dtype (WanPipeline's tensors)."""
        C = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, C, 1, 1, 1).to(like.device, like.dtype)
        inv_std = 1.0 / torch.tensor(self.vae.config.latents_std).view(1, C, 1, 1, 1).to(like.device, like.dtype)
        return mean, inv_std

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) raw VAE latents -> normalised ((z - mean) * (1/std), as Wan's i2v pipeline)."""
        mean, inv_std = self._stats(z)
        return (z - mean) * inv_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, F, h, w) normalised -> raw VAE latents (z / (1/std) + mean, WanPipeline's exact arithmetic)."""
        mean, inv_std = self._stats(z)
        return z / inv_std + mean

    # ------------------------------------------------------------------ the four calls
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each prompt -> (tokens (L, D), mask (L,) bool), WanPipeline._get_t5_prompt_embeds' way.

        The prompt is cleaned (prompt_clean), padded to max_sequence_length and encoded with its attention mask;
        the padding positions are zeroed. Wan attends to those zeros (WanPipeline passes no mask), so by default
        they stay, open (mask True): L = max_sequence_length. With trim_padding they are dropped ("" keeps at
        least its end-of-sequence token).
        """
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean
        enc = self.tokenizer([prompt_clean(p) for p in prompts], padding="max_length",
                             max_length=self.max_sequence_length, truncation=True, add_special_tokens=True,
                             return_attention_mask=True, return_tensors="pt")
        device = self.device
        # one prompt a call, as WanPipeline encodes prompt and negative prompt: half the encoder's peak
        hidden = torch.cat([self.text_encoder(ids[None].to(device), m[None].to(device)).last_hidden_state
                            for ids, m in zip(enc.input_ids, enc.attention_mask)])
        hidden = hidden.to(device, self.dtype)                               # (P, Lmax, D)
        seq_lens = enc.attention_mask.gt(0).sum(dim=1).long()
        out = []
        for h, n in zip(hidden, seq_lens.tolist()):
            if self.trim_padding:
                k = max(1, n)
                out.append((h[:k].clone(), torch.ones(k, dtype=torch.bool, device=device)))
            else:  # the real tokens, then zeros to max_sequence_length, every one attended to
                h = torch.cat([h[:n], h.new_zeros(h.shape[0] - n, h.shape[1])])
                out.append((h, torch.ones(h.shape[0], dtype=torch.bool, device=device)))
        return out

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised (B, C, F, h, w) -> pixels (B, 3, N, h*sf, w*sf) in [-1, 1], as WanPipeline decodes."""
        z = self.denormalize(latents.to(self.device, self.vae.dtype))
        video = self.vae.decode(z, return_dict=False)[0]
        return video.float().clamp(-1, 1)

    def cross_attention_bias(self, gate: torch.Tensor, h: int, w: int) -> torch.Tensor | None:
        """gate (B, F, L) -> None when all open; (B, 1, 1, L) when every frame sees the same gate; else (B, 1, S, L).

        log(gate): 0 where open, log g for soft weights, -inf where closed; expanded to the h/ph * w/pw tokens of
        each latent frame (frame-major, the order of Wan's patch embedding).
        """
        from engine.attention import gate_bias
        if bool((gate == 1).all()):
            return None
        pt, ph, pw = self.patch
        g = gate[:, ::pt]                                                     # (B, F/pt, L)
        if bool((g == g[:, :1]).all()):
            return gate_bias(g[:, :1], 1)                                     # (B, 1, 1, L)
        return gate_bias(g, (h // ph) * (w // pw))                            # (B, 1, S, L)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F) in [0, 1], text (B', L, D), gate (B', F, L) -> velocity (B, C, F, h, w).

        B' may be 1 (shared by every sample) or B. Wan 2.1 / A14B take one timestep per sample: in replacement
        mode every frame has the same t; the max is taken so frames held on their path never drag the level
        down. TI2V-5B takes one per token: each latent frame's level on its tokens (B, S), frame-major.
        """
        B, _, F_, h, w = x.shape
        dev, dt = self.device, self.dtype
        text = text.to(dev, dt).expand(B, -1, -1)                             # (B, L, D)
        bias = self.memo.get(gate, lambda: self._bias(gate, h, w), h, w)
        if bias is not None:
            bias = bias.expand(B, -1, -1, -1)                                 # (B, 1, S|1, L)
        tt = t.to(dev, torch.float32) * self.num_train_timesteps              # (B, F): the scheduler's t
        if self.expand_timesteps:
            pt, ph, pw = self.patch
            timestep = tt[:, ::pt].repeat_interleave((h // ph) * (w // pw), dim=1)  # (B, S)
        else:
            timestep = tt.amax(1)                                             # (B,)
        with self._gated(bias):
            out = self.run(self.expert(timestep), gate, hidden_states=x.to(dev, dt), timestep=timestep,
                           encoder_hidden_states=text)                       # (B, C, F, h, w)
        return out.float()

    def _bias(self, gate: torch.Tensor, h: int, w: int) -> torch.Tensor | None:
        """The gate's bias on the device in the model's dtype: (B', 1, S|1, L) or None (computed once a plan)."""
        bias = self.cross_attention_bias(gate.to(self.device, torch.float32), h, w)
        return None if bias is None else bias.to(self.dtype)

    def expert(self, timestep: torch.Tensor):
        """The transformer for a step: A14B's high-noise expert while the step's timestep >= boundary_ratio *
        num_train_timesteps (WanPipeline's rule), the low-noise one after; else the one transformer."""
        if self.transformer_2 is None:
            return self.transformer
        high = float(timestep.amax()) >= self.boundary_ratio * self.num_train_timesteps  # one sync a step
        return self.transformer if high else self.transformer_2

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler_config.get("num_train_timesteps", 1000))

    # ------------------------------------------------------------------ schedule
    def _scheduler(self):
        """A fresh scheduler of the pipeline's class and config (FlowMatchEuler, or Wan's UniPC)."""
        import diffusers
        name = self.scheduler_config.get("_class_name", "")
        cls = getattr(diffusers, name, diffusers.FlowMatchEulerDiscreteScheduler)
        return cls.from_config(self.scheduler_config)

    def sigmas(self, steps: int, n_tokens: int) -> torch.Tensor:
        """(steps + 1,) float32 noise levels from ~1 to 0: the scheduler's own, as WanPipeline sets them.

        Wan's shift is fixed (no dynamic shift), so n_tokens is not used.
        """
        sched = self._scheduler()
        sched.set_timesteps(steps)
        return sched.sigmas.float().cpu()

    def shift(self, n_tokens: int) -> float:
        """The scheduler's fixed SD3-style shift (FlowMatchEuler `shift`, UniPC `flow_shift`)."""
        c = self.scheduler_config
        return float(c.get("flow_shift", c.get("shift", 1.0)) if c.get("use_flow_sigmas") else c.get("shift", 1.0))
