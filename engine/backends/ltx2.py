"""The `ltx2` backend: LTX-2 (video with its audio) through diffusers' own classes (issue 22).

Built on `LTX2VideoTransformer3DModel`, `AutoencoderKLLTX2Video`, `AutoencoderKLLTX2Audio`, the Gemma text encoder,
`LTX2TextConnectors`, the vocoder and the `FlowMatchEulerDiscreteScheduler` config of an `LTX2Pipeline`, so that a
text-only timeline sampled by the engine gives the frames of `LTX2Pipeline(...)` on the same components, same video
and audio noise, sigmas, guidance and steps (tests/test_ltx2.py). Latents, packing, (de)normalisation, the gate's
bias, decoding and the schedule are LTX-Video's (`engine.backends.ltx`), which LTX2Pipeline copies.

What differs from LTX-Video, and how the engine's ideas map onto it:

- Text. The prompt is left-padded to max_sequence_length, Gemma's hidden states of every layer are stacked, and
  `LTX2TextConnectors` turn them into a video and an audio embedding (padding replaced by learnt registers, which
  every token then attends to: the mask the connectors return is open everywhere). One prompt a call; the engine's
  text row is the two embeddings side by side, (L, D_video + D_audio), split again in `denoise`.
- Audio. The transformer denoises video and audio tokens together, and each attends to the other in every block:
  the video cannot be denoised without the audio beside it. The backend therefore carries the audio latents
  itself (`AudioTrack`, one per sampling run, found by the run's gate as the gate's bias is): drawn from
  `audio_seed`, told the run's level T = max_f t_f at each call, stepped with the flow-match Euler rule
  x + (T_next - T) v from one call's level to the next (the last step in `waveform()`), with classifier-free
  guidance in x0 space as LTX2Pipeline does. `waveform()` then decodes them (audio VAE -> mel -> vocoder). This is
  exactly LTX2Pipeline's audio when the sampler is Euler and the run starts at level 1 (some frame generated from
  noise); a Heun step evaluates twice per step and the audio then steps Euler with each step's first evaluation
  (the second is told the next step's level again, a step of 0); a run where every frame starts below 1 (a
  whole-clip remix) makes no audio (`waveform()` returns None).
- Guidance. The sampler does not tell the denoiser its guidance scale; `guidance` (set it before sampling) says
  whether a call's batch is [cond, uncond] and `audio_guidance` (default: `guidance`) guides the audio. Left at
  None, a call is taken as guided when its batch is even and its two halves' text differ. LTX2Pipeline's further
  guidance (stg_scale at stg_blocks, modality_scale: one more transformer pass each on the conditional rows) is
  available and off by default; its terms are linear, so they are folded into the conditional velocity as
  delta / guidance and the sampler's v_u + g (v_c - v_u) adds them exactly (this needs `guidance` set). Its
  guidance rescale (std-matching, not linear) is not done.
- Timesteps. A timestep per token, as `LTX2ConditionPipeline`: latent frame f is told t_f = min(t, start_level[f])
  on its tokens; the audio and the prompt modulation (`sigma`, LTX-2.3) are told the run's level T. When every frame
  shares one level, one timestep per sample is passed, as LTX2Pipeline does.
- Keyframes. Exact where LTX2ConditionPipeline's conditioning is in place: an image at frame 0 with strength 1
  (its first-frame conditioning: the frame's tokens are told timestep t * (1 - 1) = 0 and its latents kept) is the
  engine's injection (start level 0, told 0, kept exactly). Elsewhere the mapping is the engine's, not the
  pipeline's: (a) a keyframe at pixel frame n > 0 is injected in place on latent frame 1 + (n - 1) // 8, told level
  0, where LTX2ConditionPipeline appends it as extra tokens at n's rope position; (b) a strength s in (0, 1) starts
  the frame at the plan's level 1 - s (times its coverage) on its noise path, told t_f = min(t, 1 - s), where
  LTX2ConditionPipeline tells it t * (1 - s) and blends its x0 estimate with the clean latents by s. Both are
  per-token levels the model was trained to read.
- Rope. `transformer.rope.prepare_video_coords` / `audio_rope.prepare_audio_coords`, as the pipeline calls them,
  at the grid's frame rate (`frame_rate`, which the engine sets) divided by `motion_speed`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.backends import diffusers_parts as parts
from engine.backends.ltx import LTXBackend, ltx_spec
from engine.params import InputError

EXTRA = ("audio_vae", "connectors", "vocoder")  # LTX-2's parts beside the usual five


def default_model_path() -> str | None:
    return parts.default_model_path("ltx2")


def check_folder(path) -> Path:
    """The folder, or a one-line InputError naming the missing / mismatched file and the backend.

    model_index.json is read first: another pipeline's folder (LTX-Video's LTXPipeline) is named as such.
    """
    index = Path(path).expanduser() / "model_index.json" if path is not None else None
    if index is not None and index.is_file():
        try:
            name = json.loads(index.read_text()).get("_class_name")
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise InputError(f"model: {index} is not valid JSON (the ltx2 backend reads _class_name from it)") from None
        if name is not None and not str(name).startswith("LTX2"):
            hint = " (an LTX-Video folder: use the ltx backend)" if str(name).startswith("LTX") else ""
            raise InputError(f"model: {index} says _class_name={name}{hint}; the ltx2 backend needs an LTX-2 folder "
                             f"(LTX2Pipeline)")
    return parts.check_folder(path, "ltx2", "LTX-2", extra=EXTRA)


@dataclass
class AudioTrack:
    """The audio latents of one sampling run, stepped from one denoiser call's level to the next."""
    latents: torch.Tensor                 # (Ba, La, Ca*M) packed, normalised
    level: torch.Tensor                   # (Ba,) the level `latents` are at
    made: bool                            # the run started at level 1: the audio is LTX2Pipeline's
    velocity: torch.Tensor | None = None  # (Ba, La, Ca*M) guided velocity at `level`, not yet stepped
    wave: tuple | None = None             # (waveform (Ba, channels, samples), rate) once decoded: one decode a run

    def advance(self, level: torch.Tensor) -> torch.Tensor:
        """Euler step to `level` (Ba,) with the pending velocity (the scheduler's x + (s' - s) v) -> (Ba, La, D)."""
        if self.velocity is not None:
            self.latents = self.latents + (level - self.level)[:, None, None] * self.velocity
            self.velocity = None
        self.level = level
        return self.latents


class LTX2Backend(LTXBackend):
    name = "ltx2"

    def __init__(self, transformer, vae, audio_vae, text_encoder, tokenizer, connectors, vocoder,
                 scheduler_config: dict, device="cpu", dtype=torch.float32, offload: bool = False,
                 max_sequence_length: int = 1024, frame_rate: float = 24.0, motion_speed: float = 1.0,
                 decode_timestep: float = 0.0, decode_noise_scale: float | None = None, use_cross_timestep: bool = True,
                 keep_audio: bool = False, audio_seed: int = 0, guidance: float | None = None,
                 audio_guidance: float | None = None, stg_scale: float = 0.0, stg_blocks: tuple[int, ...] = (28,),
                 modality_scale: float = 1.0, vae_tiling: bool = False, vae_slicing: bool = False, memory=None):
        self._place_parts(transformer, vae, text_encoder, tokenizer, scheduler_config, device, dtype, memory, offload,
                          vae_tiling, vae_slicing)
        self.audio_vae = self._place(audio_vae, dtype, self.home).eval()
        self.connectors = self._place(connectors, dtype, self.home).eval()
        self.vocoder = self._place(vocoder, dtype, self.home).eval()
        self.max_sequence_length = max_sequence_length   # LTX2Pipeline's default 1024 (a multiple of the registers)
        self.frame_rate, self.motion_speed = frame_rate, motion_speed
        self.decode_timestep, self.decode_noise_scale = decode_timestep, decode_noise_scale
        self.use_cross_timestep = use_cross_timestep     # the pipelines' default (LTX-2.3 reads it)
        self.keep_audio, self.audio_seed = keep_audio, audio_seed
        self.guidance, self.audio_guidance = guidance, audio_guidance
        # LTX2Pipeline's further guidance (its defaults: stg 1 at block 28, modality 3); off here unless asked: each
        # costs a transformer pass a step, and folding them into the sampler's CFG needs `guidance`
        self.stg_scale, self.stg_blocks, self.modality_scale = stg_scale, tuple(stg_blocks), modality_scale
        self.cfg_batch = True       # cond and uncond in one call, as LTX2Pipeline: the audio track needs both at once
        cfg = self.transformer.config
        self.patch, self.patch_t = cfg.patch_size, cfg.patch_size_t
        self.spec = ltx_spec(cfg, vae)
        self.text_dims = (self.connectors.video_connector.inner_dim, self.connectors.audio_connector.inner_dim)
        # once a plan: the biases and rope coords, whether it is guided, its audio track (+ a cache context): room for
        # two plans' entries, so one run's track is never evicted by its own other entries
        self.memo = parts.PerPlan(size=8)
        self.track: AudioTrack | None = None             # the latest run's audio
        self._install_memory()
        if self.memory.offload != "model":  # the small parts stay on the device (model offload moves them itself)
            for m in (self.audio_vae, self.connectors, self.vocoder):
                m.to(self.device)

    # ------------------------------------------------------------------ construction
    @classmethod
    def folder(cls, path=None) -> Path:
        return check_folder(path or default_model_path())

    @classmethod
    def video_classes(cls) -> tuple:
        from diffusers import AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
        return LTX2VideoTransformer3DModel, AutoencoderKLLTX2Video

    @classmethod
    def from_pipe(cls, pipe, **opts) -> "LTX2Backend":
        """Wrap an existing LTX2Pipeline's components (shared, not copied)."""
        device = opts.pop("device", pipe.transformer.device)
        dtype = opts.pop("dtype", pipe.transformer.dtype)
        return cls(pipe.transformer, pipe.vae, pipe.audio_vae, pipe.text_encoder, pipe.tokenizer, pipe.connectors,
                   pipe.vocoder, pipe.scheduler.config, device=device, dtype=dtype, **opts)

    @classmethod
    def load(cls, path=None, device: str = "cpu", dtype=torch.float32, offload: bool = False,
             model: str | None = None, **opts) -> "LTX2Backend":
        """From a local folder in diffusers' layout; nothing is downloaded (local_files_only)."""
        folder = cls.folder(path or model)
        import transformers
        from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                               LTX2VideoTransformer3DModel)
        from diffusers.pipelines.ltx2 import LTX2TextConnectors
        from diffusers.pipelines.ltx2 import vocoder as vocoders
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        kw = {"local_files_only": True, "torch_dtype": dtype}
        try:
            load = {n: c.from_pretrained(folder / n, **kw) for n, c in (
                ("transformer", LTX2VideoTransformer3DModel), ("vae", AutoencoderKLLTX2Video),
                ("audio_vae", AutoencoderKLLTX2Audio), ("connectors", LTX2TextConnectors))}
            vcfg = json.loads((folder / "vocoder" / "config.json").read_text())
            load["vocoder"] = getattr(vocoders, vcfg.get("_class_name", "LTX2Vocoder")).from_pretrained(
                folder / "vocoder", **kw)
            # Gemma 3 (LTX-2.0 / 2.3) or a text-only Gemma: the class its config names
            tcfg = transformers.AutoConfig.from_pretrained(folder / "text_encoder", local_files_only=True)
            text_cls = getattr(transformers, (tcfg.architectures or ["AutoModel"])[0])
            load["text_encoder"] = text_cls.from_pretrained(folder / "text_encoder", **kw)
            load["tokenizer"] = transformers.AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler",
                                                                        local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError, AttributeError) as e:  # a damaged config or weights
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise InputError(f"model: {folder} could not be loaded by the ltx2 backend ({first[:200]})") from None
        return cls(load["transformer"], load["vae"], load["audio_vae"], load["text_encoder"], load["tokenizer"],
                   load["connectors"], load["vocoder"], scheduler.config, device=device, dtype=dtype, offload=offload,
                   **opts)

    def pipeline_view(self):
        """LTX2Pipeline around this backend's modules: diffusers' LoRA loader and model offload work on it."""
        from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline
        return LTX2Pipeline(FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config), self.vae,
                            self.audio_vae, self.text_encoder, self.tokenizer, self.connectors, self.transformer,
                            self.vocoder)

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each prompt -> (tokens (L, D_video + D_audio), mask (L,) bool), LTX2Pipeline's way, L = max_sequence_length.

        One prompt a call (the pipeline encodes prompt and negative prompt apart). With the connectors' registers
        every row is open; without them the padding rows are zero and closed, as the pipeline masks them.
        """
        tok = self.tokenizer
        tok.padding_side = "left"  # Gemma's chat-style padding, as the pipeline sets it
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        enc = tok([p.strip() for p in prompts], padding="max_length", max_length=self.max_sequence_length,
                  truncation=True, add_special_tokens=True, return_tensors="pt")
        out = []
        for ids, m in zip(enc.input_ids.to(self.device), enc.attention_mask.to(self.device)):
            hidden = self.text_encoder(input_ids=ids[None], attention_mask=m[None], output_hidden_states=True)
            emb = torch.stack(hidden.hidden_states, dim=-1).flatten(2, 3).to(self.text_encoder.dtype)  # (1, L, D*n)
            video, audio, mask = self.connectors(emb, m[None], padding_side="left")  # (1, L, Dv), (1, L, Da), (1, L)
            out.append((torch.cat([video[0], audio[0]], -1).to(self.dtype), mask[0].bool()))
        return out

    # ------------------------------------------------------------------ audio
    def audio_frames(self, n_frames: int) -> int:
        """Audio latent frames for n pixel frames at frame_rate (LTX2Pipeline's round(duration * latents/s))."""
        a = self.audio_vae
        per_s = a.config.sample_rate / a.config.mel_hop_length / float(a.temporal_compression_ratio)
        return round(n_frames / self.frame_rate * per_s)

    def audio_shape(self, batch: int, n_frames: int) -> tuple[int, int, int, int]:
        """(B, Ca, La, M) of the unpacked audio latents for n pixel frames."""
        a = self.audio_vae
        mels = a.config.mel_bins // a.mel_compression_ratio
        return batch, a.config.latent_channels, self.audio_frames(n_frames), mels

    def _audio_stats(self, like: torch.Tensor):
        """The audio VAE's latents_mean, latents_std, each (Ca*M,) on like's device / dtype (the packed features)."""
        return (self.audio_vae.latents_mean.to(like.device, like.dtype),
                self.audio_vae.latents_std.to(like.device, like.dtype))

    def new_track(self, batch: int, n_frames: int, level: torch.Tensor) -> AudioTrack:
        """Fresh audio noise from audio_seed for a run whose frames start at `level` (Ba,)."""
        noise = torch.randn(self.audio_shape(batch, n_frames), generator=torch.Generator().manual_seed(self.audio_seed))
        packed = noise.transpose(1, 2).flatten(2, 3).to(self.device, torch.float32)   # (Ba, La, Ca*M)
        return AudioTrack(packed, level, made=bool((level == 1).all()))

    @torch.no_grad()
    def waveform(self) -> tuple[torch.Tensor, int] | None:
        """The latest run's audio -> (waveform (B, channels, samples) float in [-1, 1], sample rate), or None when
        not asked for (keep_audio) or not made (no frame started at level 1)."""
        tr = self.track
        if tr is None or not self.keep_audio or not tr.made:
            return None
        if tr.wave is not None:   # every variation's audio_for asks: the audio VAE and vocoder run once a run
            return tr.wave
        z = tr.advance(torch.zeros_like(tr.level))                                   # (Ba, La, Ca*M) at level 0
        mean, std = self._audio_stats(z)
        z = z * std + mean                                                           # LTX2Pipeline's denormalise
        M = self.audio_vae.config.mel_bins // self.audio_vae.mel_compression_ratio
        z = z.unflatten(2, (-1, M)).transpose(1, 2).to(self.audio_vae.dtype)        # (Ba, Ca, La, M)
        mel = self.audio_vae.decode(z, return_dict=False)[0]
        wave = self.vocoder(mel.to(self.vocoder.dtype)).float().clamp(-1, 1)        # (Ba, channels, samples)
        tr.wave = wave, int(self.vocoder.config.output_sampling_rate)
        return tr.wave

    def audio_for(self, k: int = 0):
        """Variation k's audio as engine.video_io.write_video takes it: (samples (S, channels) float32, rate), or
        None (not asked for, or not made)."""
        out = self.waveform()
        if out is None:
            return None
        wave, rate = out
        return wave[k].T.contiguous().cpu().numpy(), rate

    # ------------------------------------------------------------------ the denoiser
    def _guided(self, x: torch.Tensor, text: torch.Tensor) -> bool:
        """Whether a call's batch is [cond, uncond] (see the module docstring: Guidance)."""
        if self.guidance is not None:
            return self.guidance > 1.0
        half = x.shape[0] // 2
        return x.shape[0] % 2 == 0 and not torch.equal(text[:half], text[half:])

    def audio_bias(self, gate: torch.Tensor, n_frames: int) -> torch.Tensor:
        """gate (B, F, L) -> the audio tokens' additive bias: (B, 1, L) when every frame sees the same gate, else
        (B, La, L), audio latent frame j taking the gate of the latent frame that holds pixel frame j's time."""
        from engine.attention import gate_bias
        g = gate[:, ::self.patch_t]                                              # (B, F/pt, L)
        if bool((g == g[:, :1]).all()):
            return gate_bias(g[:, :1], 1)[:, 0]                                  # (B, 1, L)
        La = self.audio_frames(n_frames)
        per_s = La / (n_frames / self.frame_rate)                                # audio latent frames a second
        pixel = [min(n_frames - 1, int(j / per_s * self.frame_rate)) for j in range(La)]
        idx = torch.tensor([self.spec.latent_index(n) // self.patch_t for n in pixel], device=gate.device)
        return gate_bias(g[:, idx], 1)[:, 0]                                     # (B, La, L)

    def _plan_inputs(self, gate: torch.Tensor, tt: torch.Tensor, B: int, F_: int, h: int, w: int) -> dict:
        """What stays fixed over a plan's steps (computed once: host syncs): biases, rope coords, uniform t."""
        from diffusers.pipelines.ltx2.utils import conditioning_frame_rate
        n = (F_ - 1) * self.spec.temporal_factor + 1
        g = gate.to(self.device, torch.float32)
        tr = self.transformer
        return dict(
            bias=self.cross_attention_bias(g, h, w).to(self.dtype),                             # (B', 1|S, L)
            audio_bias=self.audio_bias(g, n).to(self.dtype),                                     # (B', 1|La, L)
            video_coords=tr.rope.prepare_video_coords(B, F_ // self.patch_t, h // self.patch, w // self.patch,
                                                      self.device, fps=conditioning_frame_rate(
                                                          self.frame_rate, self.motion_speed)),
            audio_coords=tr.audio_rope.prepare_audio_coords(B, self.audio_frames(n), self.device),
            uniform=bool((tt == tt[:, :1]).all()), n_frames=n)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F) in [0, 1], text (B', L, Dv+Da), gate (B', F, L) -> velocity (B, C, F, h, w).

        B' may be 1 or B. The audio track of the run (one per gate) is stepped to this call's level, run beside
        the video, and its guided velocity kept for the next call.
        """
        B, C, F_, h, w = x.shape
        dev, dt = self.device, self.dtype
        text = text.to(dev, dt).expand(B, -1, -1)                                # (B, L, Dv+Da)
        tt = t.to(dev, torch.float32)[:, ::self.patch_t]                          # (B, F/pt)
        fixed = self.memo.get(gate, lambda: self._plan_inputs(gate, tt, B, F_, h, w), "inputs", B, h, w)
        guided = self.memo.get(gate, lambda: self._guided(x, text), "guided")
        Ba = B // 2 if guided else B
        level = tt.amax(1)                                                        # (B,): the run's level T
        self.track = self.memo.get(gate, lambda: self.new_track(Ba, fixed["n_frames"], level[:Ba]), "audio")
        a = self.track.advance(level[:Ba])                                        # (Ba, La, Ca*M)
        ts = level * 1000.0                                                       # (B,): the scheduler's t
        if fixed["uniform"]:
            timestep = ts
        else:  # one timestep per token: each latent frame's level on its tokens
            timestep = (tt * 1000.0).repeat_interleave((h // self.patch) * (w // self.patch), dim=1)  # (B, S)
        video_text, audio_text = text.split(self.text_dims, dim=-1)               # (B, L, Dv), (B, L, Da)
        inputs = dict(
            hidden_states=self.pack(x.to(dev, dt)), audio_hidden_states=(torch.cat([a, a]) if guided else a).to(dt),
            encoder_hidden_states=video_text, audio_encoder_hidden_states=audio_text, timestep=timestep,
            audio_timestep=ts, sigma=ts, audio_sigma=ts, encoder_attention_mask=fixed["bias"].expand(B, -1, -1),
            audio_encoder_attention_mask=fixed["audio_bias"].expand(B, -1, -1), video_coords=fixed["video_coords"],
            audio_coords=fixed["audio_coords"])
        v, va = self.run_outputs(self.transformer, gate, **inputs, **self._grid(F_, h, w, a.shape[1]))
        v, va = v.float(), va.float()                                             # (B, S, C), (B, La, Ca*M)
        extra = self._extra_passes(gate, {k: u[:Ba] for k, u in inputs.items()}, F_, h, w, a.shape[1])
        if extra is not None:  # spatio-temporal / modality guidance folded into the conditional rows
            g = self._scale(self.guidance) if guided else 1.0
            v = torch.cat([v[:Ba] + self._delta(v[:Ba], extra[0]) / g, v[Ba:]])
        self.track.velocity = self._audio_velocity(a, va, level[:Ba], guided, None if extra is None else extra[1])
        return self.unpack(v, F_ // self.patch_t, h // self.patch, w // self.patch)

    def _grid(self, F_: int, h: int, w: int, La: int) -> dict:
        return dict(num_frames=F_ // self.patch_t, height=h // self.patch, width=w // self.patch, audio_num_frames=La,
                    use_cross_timestep=self.use_cross_timestep)

    def _extra_passes(self, gate, cond: dict, F_: int, h: int, w: int, La: int):
        """LTX2Pipeline's further guidance passes on the conditional rows, when asked (stg_scale > 0, modality_scale
        > 1) -> ((video outputs, ...), (audio outputs, ...)) as (perturbed, isolated), each (Ba, S|La, D); or None."""
        runs = []
        if self.stg_scale > 0:  # self-attention of the named blocks skipped (STG)
            runs.append(("stg", dict(spatio_temporal_guidance_blocks=list(self.stg_blocks))))
        if self.modality_scale > 1:  # no audio-video cross-attention
            runs.append(("modality", dict(isolate_modalities=True)))
        if not runs:
            return None
        outs = [self.run_outputs(self.transformer, gate, **cond, **self._grid(F_, h, w, La), **kw) for _, kw in runs]
        names = [n for n, _ in runs]
        video = {n: o[0].float() for n, o in zip(names, outs)}
        audio = {n: o[1].float() for n, o in zip(names, outs)}
        return video, audio

    def _delta(self, cond: torch.Tensor, extra: dict) -> torch.Tensor:
        """The extra guidance terms on a conditional output (Ba, *, D): stg (c - perturbed) + (m - 1)(c - isolated).

        Written on velocities or on x0 estimates alike (x0 = x - sigma v is affine in v)."""
        out = torch.zeros_like(cond)
        if "stg" in extra:
            out = out + self.stg_scale * (cond - extra["stg"])
        if "modality" in extra:
            out = out + (self.modality_scale - 1) * (cond - extra["modality"])
        return out

    def _scale(self, g: float | None) -> float:
        if g is None:
            raise InputError("ltx2: spatio-temporal / modality guidance needs the guidance scale: set backend.guidance")
        return g

    def _audio_velocity(self, a: torch.Tensor, va: torch.Tensor, sigma: torch.Tensor, guided: bool,
                        extra: dict | None = None) -> torch.Tensor:
        """a (Ba, La, D), model output va ((2)Ba, La, D), sigma (Ba,) -> guided velocity (Ba, La, D).

        LTX2Pipeline's arithmetic: to x0 = a - v sigma, x0_c + (g - 1)(x0_c - x0_u) + the extra guidance terms
        (`extra`: the conditional rows' STG / isolated outputs), back to (a - x0) / sigma.
        """
        s = sigma[:, None, None]
        x0 = [a - v * s for v in (va.chunk(2) if guided else (va,))]
        g = self.audio_guidance if self.audio_guidance is not None else (self.guidance or 1.0)
        x0_g = x0[0] + (g - 1) * (x0[0] - x0[1]) if guided else x0[0]
        if extra:
            x0_g = x0_g + self._delta(x0[0], {k: a - u * s for k, u in extra.items()})
        return (a - x0_g) / s
