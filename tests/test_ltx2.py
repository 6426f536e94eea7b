"""The ltx2 backend (issue 22) on tiny random configurations of diffusers' own LTX-2 classes, on the CPU.

Nothing is downloaded: the transformer, both VAEs, the connectors, the vocoder and a text-only Gemma 3 are built
from small configs with random weights (the sizes of diffusers' own LTX-2 tests), and the tokenizer is the BERT
tokenizer shipped in the MiniLM package. Every test name holds `ltx2` (`pytest -k ltx2`).
"""
import json

import pytest
import torch

pytest.importorskip("diffusers")

from engine import ops  # noqa: E402
from engine.api import Settings, generate_latents  # noqa: E402
from engine.params import InputError  # noqa: E402
from engine.plan import compile  # noqa: E402
from engine.sampler import sample  # noqa: E402
from engine.timeline import TextCard  # noqa: E402
from tests.conftest import check_missing_folder, tiny_tokenizer  # noqa: E402

FPS = 8
SEQ = 16          # max_sequence_length: a multiple of the connectors' registers
# 32x32 px (LTX2Pipeline wants multiples of 32) -> 16x16 latent cells with the tiny VAE (2x in space and time)
SIZE = dict(fps=FPS, aspect="1:1", resolution=32)


def _nonzero(model):
    """Zero-initialised tables would hide bugs in timesteps and text: make every part of the model count."""
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return model.eval()


def tiny_components(seed: int = 0, registers: int | None = 8) -> dict:
    """An LTX2Pipeline's components with tiny random weights (diffusers' LTX-2 test sizes)."""
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3TextConfig, Gemma3TextModel
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"  # as Gemma's (LTX2ConditionPipeline reads the side when it is built)
    text_encoder = Gemma3TextModel(Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=64, sliding_window=8, pad_token_id=0)).eval()
    transformer = _nonzero(LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=32, rope_double_precision=False, rope_type="split"))
    connectors = LTX2TextConnectors(
        caption_channels=32, text_proj_in_factor=3, video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=registers, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=registers, connector_rope_base_seq_len=32,
        rope_double_precision=False, rope_type="split").eval()
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), decoder_block_out_channels=(8,),
        layers_per_block=(1,), decoder_layers_per_block=(1, 1), spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,), decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False).eval()
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8).eval()
    with torch.no_grad():  # non-trivial statistics so (de)normalisation is really exercised
        vae.latents_mean.copy_(torch.randn(4) * 0.1)
        vae.latents_std.copy_(torch.rand(4) + 0.5)
        audio_vae.latents_mean.copy_(torch.randn_like(audio_vae.latents_mean) * 0.1)
        audio_vae.latents_std.copy_(torch.rand_like(audio_vae.latents_std) + 0.5)
    vocoder = LTX2Vocoder(in_channels=16, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
                          upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                          leaky_relu_negative_slope=0.1, output_sampling_rate=16000).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096,
                                                max_shift=2.05, shift_terminal=0.1, use_dynamic_shifting=True,
                                                time_shift_type="exponential")
    return dict(transformer=transformer, vae=vae, audio_vae=audio_vae, text_encoder=text_encoder, tokenizer=tokenizer,
                connectors=connectors, vocoder=vocoder, scheduler=scheduler)


def tiny_pipe(seed: int = 0, **kw):
    """A tiny LTX2Pipeline, its progress bar off."""
    from diffusers import LTX2Pipeline
    pipe = LTX2Pipeline(**tiny_components(seed, **kw))
    pipe.set_progress_bar_config(disable=True)
    return pipe


pipe = pytest.fixture(scope="module")(tiny_pipe)


@pytest.fixture(scope="module")
def ltx2(pipe):
    from engine.backends.ltx2 import LTX2Backend
    return LTX2Backend.from_pipe(pipe, max_sequence_length=SEQ, keep_audio=True)


def run_both(pipe, ltx2, prompt: str, steps: int, guidance: float, duration_s: float = 1.0, seed: int = 0,
             **extra):
    """The same job through the engine and LTX2Pipeline -> (frames (1, N, 3, H, W) in [0, 1], waveform) of each.

    extra: the pipeline's further guidance (stg_scale, modality_scale, spatio_temporal_guidance_blocks); off when
    not given."""
    tl = ops.t2v(prompt, duration_s=duration_s, seed=seed, **SIZE)
    plan = compile(tl, ltx2)
    g = plan.grid
    noise = torch.randn((1, *plan.known.shape), generator=torch.Generator().manual_seed(seed))  # (1, C, F, h, w)
    ltx2.frame_rate, ltx2.guidance, ltx2.audio_guidance, ltx2.audio_seed = g.fps, guidance, guidance, seed
    ltx2.keep_audio = True                  # as a job with Settings(audio=True) sets it (an earlier test may not)
    sigmas = ltx2.sigmas(steps, g.latent_frames * g.latent_h * g.latent_w)
    try:
        x = sample(ltx2.denoise, plan, sigmas, guidance, noise=noise, per_token=True)
        wave, rate = ltx2.waveform()
    finally:  # the other tests leave guidance to the backend's own reading of the batch
        ltx2.guidance = ltx2.audio_guidance = None
    ours = (ltx2.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)   # (1, N, 3, H, W)
    # the same audio noise, handed over as the raw latents the pipeline normalises; the pipeline's extra guidance
    # terms (spatio-temporal, modality isolation, rescale) off: the engine guides with classifier-free guidance
    a = ltx2.new_track(1, g.n_frames, torch.ones(1)).latents                 # (1, La, Ca*M) normalised
    mean, std = ltx2._audio_stats(a)
    terms = {"stg_scale": 0.0, "modality_scale": 1.0, **extra}
    out = pipe(prompt=prompt, negative_prompt="", height=g.height, width=g.width, num_frames=g.n_frames,
               frame_rate=float(g.fps), num_inference_steps=steps, guidance_scale=guidance,
               audio_guidance_scale=guidance, audio_stg_scale=terms["stg_scale"],
               audio_modality_scale=terms["modality_scale"], guidance_rescale=0.0, audio_guidance_rescale=0.0, **terms,
               latents=ltx2.pack(noise), audio_latents=a * std + mean,
               max_sequence_length=SEQ, output_type="pt", generator=torch.Generator().manual_seed(9))
    return ours, out.frames, (wave, rate), out.audio


# ----------------------------------------------------------------------------- 1. conformance
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_ltx2_text_only_timeline_matches_ltx2_pipeline_video_and_audio(pipe, ltx2, guidance):
    ours, theirs, (wave, rate), audio = run_both(pipe, ltx2, "a red ball rolls to the left", 3, guidance)
    assert ours.shape == theirs.shape == (1, 9, 3, 32, 32)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"video: max abs diff {diff:.3g}"      # measured 5.4e-7 (guidance 1), 6.6e-7 (3)
    assert wave.shape == audio.shape and rate == 16000
    adiff = (wave - audio.float().clamp(-1, 1)).abs().max().item()
    assert adiff <= 1e-4, f"audio: max abs diff {adiff:.3g}"    # measured 4.5e-8, 6.0e-8


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_ltx2_spatio_temporal_and_modality_guidance_match_ltx2_pipeline(pipe, ltx2, guidance):
    """LTX2Pipeline's further guidance (STG at a block, modality isolation 3), folded into the conditional rows."""
    ltx2.stg_scale, ltx2.stg_blocks, ltx2.modality_scale = 1.0, (1,), 3.0
    try:
        ours, theirs, (wave, _), audio = run_both(pipe, ltx2, "a red ball rolls", 3, guidance, stg_scale=1.0,
                                                  modality_scale=3.0, spatio_temporal_guidance_blocks=[1])
    finally:
        ltx2.stg_scale, ltx2.stg_blocks, ltx2.modality_scale = 0.0, (28,), 1.0
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"video: max abs diff {diff:.3g}"      # measured 6.0e-7, 7.7e-7 (the terms move 0.52)
    adiff = (wave - audio.float().clamp(-1, 1)).abs().max().item()
    assert adiff <= 1e-4, f"audio: max abs diff {adiff:.3g}"    # measured 6.0e-8 (the terms move 0.009)


def test_ltx2_image_at_frame_0_matches_ltx2_condition_pipeline(pipe, ltx2, make_image, monkeypatch):
    """i2v (an image card at frame 0, strength 1) = LTX2ConditionPipeline with the image at latent index 0: its
    first-frame tokens are the image's encoding (posterior mode, both), told timestep t * (1 - 1) = 0 and kept.

    Set up so both do the same thing: no CRF re-compression of the image (crf=0), the pipeline's noise drawn from
    its generator at noise_scale 1 (video tokens, then audio tokens) and handed to the engine, CFG only."""
    from diffusers import LTX2ConditionPipeline
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from PIL import Image

    from engine.backends.ltx2 import AudioTrack
    from engine.video_io import read_image
    cond_pipe = LTX2ConditionPipeline(pipe.scheduler, pipe.vae, pipe.audio_vae, pipe.text_encoder, pipe.tokenizer,
                                      pipe.connectors, pipe.transformer, pipe.vocoder)
    cond_pipe.set_progress_bar_config(disable=True)
    image = make_image(w=32, h=32)
    tl = ops.i2v(image, "a red ball rolls", duration_s=1.0, seed=0, **SIZE)
    plan = compile(tl, ltx2)
    g = plan.grid
    assert plan.start_level.tolist() == [0, 1, 1, 1, 1]
    steps, guidance = 3, 3.0
    gen = torch.Generator().manual_seed(5)                                   # the pipeline's draws, in its order
    video_noise = torch.randn((1, g.latent_frames * g.latent_h * g.latent_w, 4), generator=gen)     # (1, S, C)
    ltx2.frame_rate = g.fps
    audio_noise = torch.randn((1, ltx2.audio_frames(g.n_frames), 4), generator=gen)                # (1, La, Ca*M)
    monkeypatch.setattr(ltx2, "new_track", lambda b, n, level: AudioTrack(audio_noise.clone(), level, True))
    ltx2.guidance = ltx2.audio_guidance = guidance
    try:
        sigmas = ltx2.sigmas(steps, g.latent_frames * g.latent_h * g.latent_w)
        noise = ltx2.unpack(video_noise, g.latent_frames, g.latent_h, g.latent_w)                    # (1, C, F, h, w)
        x = sample(ltx2.denoise, plan, sigmas, guidance, noise=noise, per_token=True)
        wave, _ = ltx2.waveform()
    finally:
        ltx2.guidance = ltx2.audio_guidance = None
    ours = (ltx2.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)   # (1, N, 3, H, W)
    cond = LTX2VideoCondition(frames=Image.fromarray(read_image(image)), index=0, strength=1.0, crf=0)
    out = cond_pipe(conditions=[cond], prompt="a red ball rolls", negative_prompt="", height=g.height, width=g.width,
                    num_frames=g.n_frames, frame_rate=float(g.fps), num_inference_steps=steps,
                    guidance_scale=guidance, audio_guidance_scale=guidance, stg_scale=0.0, audio_stg_scale=0.0,
                    modality_scale=1.0, audio_modality_scale=1.0, guidance_rescale=0.0, audio_guidance_rescale=0.0,
                    noise_scale=1.0, audio_latents=torch.zeros(1, 2, audio_noise.shape[1], 2), max_sequence_length=SEQ,
                    output_type="pt", generator=torch.Generator().manual_seed(5))
    assert ours.shape == out.frames.shape
    diff = (ours - out.frames).abs().max().item()
    assert diff <= 1e-4, f"video: max abs diff {diff:.3g}"      # measured 5.4e-7
    adiff = (wave - out.audio.float().clamp(-1, 1)).abs().max().item()
    assert adiff <= 1e-4, f"audio: max abs diff {adiff:.3g}"    # measured 6.0e-8


def test_ltx2_sigmas_and_pack_are_the_pipelines(pipe, ltx2):
    import numpy as np
    from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift, retrieve_timesteps
    steps, n = 5, 5 * 16 * 16
    c = pipe.scheduler.config
    mu = calculate_shift(n, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
    retrieve_timesteps(pipe.scheduler, steps, "cpu", None, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    assert torch.equal(ltx2.sigmas(steps, n), pipe.scheduler.sigmas)
    x = torch.randn(2, 4, 3, 4, 6)                                          # (B, C, F, h, w)
    assert torch.equal(ltx2.pack(x), pipe._pack_latents(x, 1, 1))
    assert torch.allclose(ltx2.normalize(x), pipe._normalize_latents(x, pipe.vae.latents_mean, pipe.vae.latents_std,
                                                                     pipe.vae.config.scaling_factor))


# ----------------------------------------------------------------------------- 2. gating
def test_ltx2_cross_attention_outside_a_cards_span_ignores_its_text(ltx2):
    """Block 0's video and audio text cross-attention outputs outside card 1's span are bit-identical when card 1's
    text changes, and differ inside it (audio latent frames follow the video frame at their time)."""
    def plan_for(text1):
        return compile(ops.storyboard([TextCard(0.0, 1.0, "a red ball"), TextCard(1.0, 2.0, text1)], 2.0, **SIZE),
                       ltx2)

    pa, pb = plan_for("a blue box"), plan_for("a green cat")
    assert pa.text.shape == pb.text.shape and not torch.equal(pa.text, pb.text)
    seg = next(s for s in pa.segments if s.name == "cards[1]")
    open_ = pa.gate[:, seg.start:seg.end].amax(1) > 0                        # (F,) frames that see card 1
    outside, inside = (~open_).nonzero().flatten().tolist(), open_.nonzero().flatten().tolist()
    assert outside and inside
    g = pa.grid
    abias = ltx2.audio_bias(pa.gate[None], g.n_frames)[0]                    # (La, L)
    a_out = torch.isinf(abias[:, seg.start:seg.end]).all(1)                  # audio frames that do not see card 1
    assert a_out.any() and (~a_out).any()
    x = torch.randn(1, 4, g.latent_frames, g.latent_h, g.latent_w, generator=torch.Generator().manual_seed(1))
    t = torch.full((1, g.latent_frames), 0.7)
    seen = {"video": [], "audio": []}
    block = ltx2.transformer.transformer_blocks[0]
    hooks = [block.attn2.register_forward_hook(lambda m, i, o: seen["video"].append(o.detach())),
             block.audio_attn2.register_forward_hook(lambda m, i, o: seen["audio"].append(o.detach()))]
    try:
        for p in (pa, pb):
            ltx2.denoise(x, t, p.text[None], p.gate[None])
    finally:
        for h in hooks:
            h.remove()
    va, vb = (o.view(1, g.latent_frames, g.latent_h * g.latent_w, -1) for o in seen["video"])  # (1, F, h*w, D)
    assert torch.equal(va[:, outside], vb[:, outside]) and not torch.allclose(va[:, inside], vb[:, inside])
    aa, ab = seen["audio"]                                                   # (1, La, Da)
    assert torch.equal(aa[:, a_out], ab[:, a_out]) and not torch.allclose(aa[:, ~a_out], ab[:, ~a_out])


# ----------------------------------------------------------------------------- 3. keyframes
def test_ltx2_keyframes_at_any_frame_are_kept_exactly_and_told_level_0(ltx2, make_image):
    """Image cards at pixel frames 0 and 5 (strength 1) and a partial one (strength 0.4) at frame 12: the kept latent
    frames come back exactly as encoded, their tokens told timestep 0 at every step, the partial one its level."""
    from engine.timeline import ImageCard, Timeline
    red, blue = make_image("r.png", w=32, h=32), make_image("b.png", w=32, h=32, color=(20, 40, 220))
    tl = Timeline(duration_s=2.0, seed=0, cards=[ImageCard(0.0, str(red)), ImageCard(5 / FPS, str(blue)),
                                                 ImageCard(12 / FPS, str(red), strength=0.4),
                                                 TextCard(0.0, 2.0, "a ball")], **SIZE)
    plan = compile(tl, ltx2)
    lv = plan.start_level
    kept = (lv == 0).nonzero().flatten().tolist()
    partial = ((lv > 0) & (lv < 1)).nonzero().flatten().tolist()
    assert kept == [0, ltx2.spec.latent_index(5)] and partial == [ltx2.spec.latent_index(12)]
    seen = []
    hook = ltx2.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["timestep"]), with_kwargs=True)
    try:
        _, x = generate_latents(tl, ltx2, Settings(steps=3, guidance=2.0))
    finally:
        hook.remove()
    assert torch.equal(x[0][:, kept], plan.known[:, kept])
    per_frame = plan.grid.latent_h * plan.grid.latent_w
    for ts in seen:                                                          # (2B, S): cond and uncond rows
        frames = ts.view(ts.shape[0], -1, per_frame)                        # (2B, F, h*w)
        assert (frames[:, kept] == 0).all()
        assert (frames[:, partial] <= float(lv[partial[0]]) * 1000 + 1e-3).all()


def test_ltx2_per_token_timesteps_follow_each_frames_level(ltx2):
    seen = []
    hook = ltx2.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    x = torch.randn(1, 4, 3, 2, 2)                                          # (B, C, F, h, w)
    text = torch.randn(1, SEQ, sum(ltx2.text_dims))
    try:
        ltx2.denoise(x, torch.tensor([[0.0, 0.25, 0.9]]), text, torch.ones(1, 3, SEQ))
    finally:
        hook.remove()
    kw = seen[0]
    assert kw["timestep"][0].tolist() == [0.0] * 4 + [250.0] * 4 + [pytest.approx(900.0)] * 4
    assert kw["audio_timestep"].tolist() == [pytest.approx(900.0)]        # the run's level


# ----------------------------------------------------------------------------- 4. audio
def test_ltx2_audio_is_kept_in_the_mp4_when_asked_and_dropped_otherwise(ltx2, make_video, tmp_path):
    import imageio_ffmpeg

    from engine.api import decode_frames
    from engine.video_io import write_video
    tl = ops.t2v("a dog barks", duration_s=1.0, seed=3, **SIZE)
    plan, x = generate_latents(tl, ltx2, Settings(steps=2, guidance=2.0, audio=True))
    samples, rate = ltx2.audio_for(0)                                       # (S, 2), 16 kHz
    assert samples.ndim == 2 and samples.shape[1] == 2 and rate == 16000 and abs(samples).max() > 0
    frames = decode_frames(ltx2, x, plan.grid.out_frames)[0]
    meta = next(imageio_ffmpeg.read_frames(str(write_video(tmp_path / "a.mp4", frames, FPS, audio=(samples, rate)))))
    assert meta["audio_codec"] == "aac" and meta["duration"] == pytest.approx(len(frames) / FPS, abs=0.1)
    generate_latents(tl, ltx2, Settings(steps=2, guidance=2.0))
    assert ltx2.audio_for(0) is None                                        # not asked for: dropped
    # every frame kept in part (a whole-clip remix): the run never starts at level 1, so no audio is made
    remix = ops.remix(make_video("c.mp4", n=8, fps=FPS, w=32, h=32), "a cat", 0.5, resolution=32)
    p, _ = generate_latents(remix, ltx2, Settings(steps=2, guidance=1.0, audio=True))
    assert float(p.start_level.max()) < 1 and ltx2.audio_for(0) is None


# ----------------------------------------------------------------------------- 5. folders, the picker, sizes
def test_ltx2_missing_or_incomplete_folder_is_one_line(tmp_path):
    from engine.backends.ltx2 import LTX2Backend
    check_missing_folder(LTX2Backend, "ltx2", tmp_path)


def test_ltx2_folder_loads_offline_is_listed_and_bad_files_are_named(tmp_path, pipe, ltx2, monkeypatch):
    from engine.backends.registry import configured, load_backend, spec_of
    for name in ("ltx", "ltx2"):
        monkeypatch.delenv(f"CINEPATCH_{name.upper()}_MODEL", raising=False)
    monkeypatch.setenv("CINEPATCH_MODELS", str(tmp_path))
    assert "ltx2" not in configured()
    folder = tmp_path / "ltx2"
    pipe.save_pretrained(folder)
    assert configured()[1:] == ["ltx2"]                                     # what the picker and /v1 `model` list
    assert spec_of("ltx2") == ltx2.spec
    b = load_backend("ltx2", device="cpu", max_sequence_length=SEQ)
    b.frame_rate, b.audio_seed = ltx2.frame_rate, ltx2.audio_seed          # what the engine sets per job
    assert torch.equal(b.encode_text(["a red ball"])[0][0], ltx2.encode_text(["a red ball"])[0][0])
    x, t = torch.randn(1, 4, 3, 4, 4), torch.full((1, 3), 0.6)             # (B, C, F, h, w), (B, F)
    text, gate = ltx2.encode_text(["a red ball"])[0][0][None], torch.ones(1, 3, SEQ)
    assert torch.allclose(b.denoise(x, t, text, gate), ltx2.denoise(x, t, text, gate), atol=1e-6)
    # a missing part, a damaged weights file, another model's folder: one line naming the file and the backend
    (folder / "vocoder" / "config.json").rename(folder / "vocoder" / "config.bak")
    with pytest.raises(InputError, match=r"incomplete for the ltx2 backend: missing vocoder/config.json"):
        load_backend("ltx2")
    (folder / "vocoder" / "config.bak").rename(folder / "vocoder" / "config.json")
    (folder / "audio_vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError) as e:
        load_backend("ltx2")
    assert str(folder) in str(e.value) and "ltx2 backend" in str(e.value) and "\n" not in str(e.value)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "LTXPipeline"}))
    with pytest.raises(InputError) as e:
        spec_of("ltx2")
    msg = str(e.value)
    assert str(folder / "model_index.json") in msg and "the ltx2 backend" in msg and "use the ltx backend" in msg
    assert "\n" not in msg


def test_ltx2_sizes_and_frame_counts_snap_to_the_real_model_and_are_reported(tmp_path, pipe, ltx2, monkeypatch):
    """LTX-2's grid (32-pixel cells, 8 frames a latent frame after the first: LTX2Pipeline's own fallback values, set
    on a meta-device VAE) snaps sizes and frame counts; the page says what a duration becomes on the tiny saved model
    without loading it."""
    from diffusers import AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel

    from engine.backends.ltx import ltx_spec
    from tests.conftest import check_spec_without_loading
    with torch.device("meta"):
        spec = ltx_spec(LTX2VideoTransformer3DModel().config,
                        AutoencoderKLLTX2Video(spatial_compression_ratio=32, temporal_compression_ratio=8))
    assert (spec.temporal_factor, spec.spatial_factor, spec.multiple, spec.channels) == (8, 32, 32, 128)
    assert spec.snap_frames(120) == 121 and spec.snap_frames(121) == 121 and spec.snap_frames(122) == 129
    assert spec.frame_size((16, 9), 500) == (896, 512) and spec.frame_size((1, 1), 10) == (32, 32)
    monkeypatch.delenv("CINEPATCH_LTX2_MODEL", raising=False)
    pipe.save_pretrained(tmp_path / "models" / "ltx2")
    check_spec_without_loading(type(ltx2), "ltx2", tmp_path / "models" / "ltx2", tmp_path, monkeypatch, ltx2.spec)


# ----------------------------------------------------------------------------- 6. memory settings
@pytest.mark.parametrize("memory", ["model", "group"])
def test_ltx2_memory_modes_give_the_same_frames_and_audio(memory):
    """diffusers' model / group offload hooks (model offload through the LTX2Pipeline view, audio parts included)
    move weights, not results: frames and audio bit for bit those of `none` (CPU as the compute device too)."""
    pytest.importorskip("accelerate")
    from engine.api import generate
    from engine.backends.ltx2 import LTX2Backend

    def run(mem: str):
        c = tiny_components()
        b = LTX2Backend(c["transformer"], c["vae"], c["audio_vae"], c["text_encoder"], c["tokenizer"],
                        c["connectors"], c["vocoder"], dict(c["scheduler"].config), memory=mem,
                        max_sequence_length=SEQ)
        frames = generate(ops.t2v("a red ball", duration_s=1.0, seed=1, **SIZE), b,
                          Settings(steps=2, guidance=2.0, audio=True))[0]
        return b, frames, b.audio_for(0)[0]                                 # (N, H, W, 3) uint8, (S, 2)

    _, ref_frames, ref_audio = run("none")
    b, frames, audio = run(memory)
    assert str(b.memory) == memory
    assert (frames == ref_frames).all() and (audio == ref_audio).all()


def _has_sound(path) -> bool:
    import imageio_ffmpeg
    return bool(next(imageio_ffmpeg.read_frames(str(path))).get("audio_codec"))


@pytest.mark.parametrize("audio", [True, False])
def test_ltx2_sound_asked_for_reaches_the_cli_file_and_the_librarys_video(ltx2, tmp_path, audio):
    """Settings.audio (the CLI's --audio, a request's "audio", the page's checkbox) from the request to the mp4:
    through render() and through the studio's job queue into the library; without it, no audio stream."""
    from engine.api import render
    from studio.jobs import Jobs
    from studio.library import Library
    tl = ops.t2v("a dog barks", duration_s=1.0, seed=3, **SIZE)
    [out] = render(tl, ltx2, Settings(steps=2, guidance=2.0, audio=audio), tmp_path / "cli.mp4", backend_name="ltx2")
    assert _has_sound(out) == audio and json.loads(out.with_suffix(".json").read_text())["settings"]["audio"] == audio
    jobs = Jobs(Library(tmp_path / "home", own=True), "ltx2", loader=lambda: ltx2)
    job = jobs.submit("generate", {"prompt": "a dog barks", "duration_s": 1.0, "steps": 2, "audio": audio, **SIZE})
    assert jobs.wait(job, 300)["state"] == "done"
    [video] = jobs.library.videos_of_job(job)
    assert _has_sound(video["path"]) == audio


def test_ltx2_sound_is_refused_in_one_line_where_none_can_be_kept(ltx2, backend, make_video, tmp_path):
    from studio.jobs import Jobs
    from studio.library import Library
    lib = Library(tmp_path / "home", own=True)
    with pytest.raises(InputError, match=r"^audio: the reference model makes no sound; .* LTX-2 \(ltx2\) does$"):
        Jobs(lib, "reference", loader=lambda: backend).submit("generate", {"prompt": "x", "audio": True, **SIZE})
    clip = lib.add_upload(make_video("c.mp4", n=8, fps=FPS, w=32, h=32), "c.mp4")
    with pytest.raises(InputError, match="^audio: sound is kept for generations and storyboards; an extend"):
        Jobs(lib, "ltx2", loader=lambda: ltx2).submit("extend", {"video": clip, "audio": True, **SIZE})
    with pytest.raises(InputError, match="^audio: "):
        Settings(audio="yes")
