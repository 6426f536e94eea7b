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
SIZE = dict(fps=FPS, aspect="1:1", resolution=32)  # 32x32 px (LTX2Pipeline: a multiple of 32) -> 16x16 cells with the tiny VAE (2x, 2x in time)


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


def run_both(pipe, ltx2, prompt: str, steps: int, guidance: float, duration_s: float = 1.0, seed: int = 0):
    """The same job through the engine and LTX2Pipeline -> (frames (1, N, 3, H, W) in [0, 1], waveform) of each."""
    tl = ops.t2v(prompt, duration_s=duration_s, seed=seed, **SIZE)
    plan = compile(tl, ltx2)
    g = plan.grid
    noise = torch.randn((1, *plan.known.shape), generator=torch.Generator().manual_seed(seed))  # (1, C, F, h, w)
    ltx2.frame_rate, ltx2.guidance, ltx2.audio_guidance, ltx2.audio_seed = g.fps, guidance, guidance, seed
    sigmas = ltx2.sigmas(steps, g.latent_frames * g.latent_h * g.latent_w)
    x = sample(ltx2.denoise, plan, sigmas, guidance, noise=noise, per_token=True)
    wave, rate = ltx2.waveform()
    ours = (ltx2.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)   # (1, N, 3, H, W)
    # the same audio noise, handed over as the raw latents the pipeline normalises; the pipeline's extra guidance
    # terms (spatio-temporal, modality isolation, rescale) off: the engine guides with classifier-free guidance
    a = ltx2.new_track(1, g.n_frames, torch.ones(1)).latents                 # (1, La, Ca*M) normalised
    mean, std = ltx2._audio_stats(a)
    out = pipe(prompt=prompt, negative_prompt="", height=g.height, width=g.width, num_frames=g.n_frames,
               frame_rate=float(g.fps), num_inference_steps=steps, guidance_scale=guidance,
               audio_guidance_scale=guidance, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0,
               audio_modality_scale=1.0, guidance_rescale=0.0, audio_guidance_rescale=0.0,
               latents=ltx2.pack(noise), audio_latents=a * std + mean,
               max_sequence_length=SEQ, output_type="pt", generator=torch.Generator().manual_seed(9))
    return ours, out.frames, (wave, rate), out.audio


# ----------------------------------------------------------------------------- 1. conformance
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_ltx2_text_only_timeline_matches_ltx2_pipeline_video_and_audio(pipe, ltx2, guidance):
    ours, theirs, (wave, rate), audio = run_both(pipe, ltx2, "a red ball rolls to the left", 3, guidance)
    assert ours.shape == theirs.shape == (1, 9, 3, 32, 32)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"video: max abs diff {diff:.3g}"
    assert wave.shape == audio.shape and rate == 16000
    adiff = (wave - audio.float().clamp(-1, 1)).abs().max().item()
    assert adiff <= 1e-4, f"audio: max abs diff {adiff:.3g}"
