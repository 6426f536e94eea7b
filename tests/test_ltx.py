"""The ltx backend (issue 5) on tiny random configurations of diffusers' own LTX classes, on the CPU.

Nothing is downloaded: the transformer, VAE and T5 encoder are built from small configs with
random weights, and the tokenizer is the BERT tokenizer shipped in the MiniLM package.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from engine import ops  # noqa: E402
from engine.api import Settings, generate, generate_latents  # noqa: E402
from engine.params import InputError  # noqa: E402
from engine.plan import compile  # noqa: E402
from engine.sampler import sample  # noqa: E402
from engine.timeline import TextCard  # noqa: E402
from tests.conftest import (check_missing_folder, check_operations_end_to_end, check_spec_without_loading,  # noqa: E402
                            tiny_tokenizer)

FPS = 8
SIZE = dict(fps=FPS, aspect="1:1", resolution=32)  # 32x32 px -> 8x8 latent cells with the tiny VAE (4x)


def tiny_components(seed: int = 0) -> dict:
    """An LTXPipeline's components with tiny random weights (the VAE is diffusers' test config)."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                           num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                                           decoder_start_token_id=0)).eval()
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                                             num_layers=2, caption_channels=32).eval()
    # The zero-initialised adaLN tables would hide bugs in timesteps: make every part of the model count.
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    vae = AutoencoderKLLTXVideo(in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                decoder_layers_per_block=(1, 1, 1, 1, 1),
                                spatio_temporal_scaling=(True, True, False, False),
                                decoder_spatio_temporal_scaling=(True, True, False, False),
                                decoder_inject_noise=(False, False, False, False, False),
                                upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
                                timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True,
                                decoder_causal=False).eval()
    with torch.no_grad():  # non-trivial statistics so (de)normalisation is really exercised
        vae.latents_mean.copy_(torch.randn(8) * 0.1)
        vae.latents_std.copy_(torch.rand(8) + 0.5)
    # LTX-Video's own scheduler config: exponential dynamic shift and a terminal stretch
    scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096,
                                                max_shift=2.05, shift_terminal=0.1, use_dynamic_shifting=True,
                                                time_shift_type="exponential")
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def tiny_pipe(seed: int = 0):
    from diffusers import LTXPipeline
    pipe = LTXPipeline(**tiny_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


@pytest.fixture(scope="module")
def ltx(pipe):
    from engine.backends.ltx import LTXBackend
    return LTXBackend.from_pipe(pipe)


def run_both(pipe, ltx, prompt: str, steps: int, guidance: float, duration_s: float = 2.0, seed: int = 0):
    """The same job through the engine and through LTXPipeline -> frames of each, (B, N, 3, H, W) in [0, 1]."""
    tl = ops.t2v(prompt, duration_s=duration_s, seed=seed, **SIZE)
    plan = compile(tl, ltx)
    g = plan.grid
    noise = torch.randn((1, *plan.known.shape), generator=torch.Generator().manual_seed(seed))  # (1, C, F, h, w)
    ltx.frame_rate = g.fps
    sigmas = ltx.sigmas(steps, g.latent_frames * g.latent_h * g.latent_w)
    x = sample(ltx.denoise, plan, sigmas, guidance, noise=noise, per_token=True)
    _, x_api = generate_latents(tl, ltx, Settings(steps=steps, guidance=guidance))  # the hook: same schedule, noise
    assert torch.equal(x_api, x)
    ours = (ltx.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)   # (1, N, 3, H, W)
    theirs = pipe(prompt=prompt, negative_prompt="", height=g.height, width=g.width, num_frames=g.n_frames,
                  frame_rate=int(g.fps), num_inference_steps=steps, guidance_scale=guidance,
                  latents=ltx.pack(noise), output_type="pt").frames                 # (1, N, 3, H, W)
    return ours, theirs


# ----------------------------------------------------------------------------- 1. conformance
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_text_only_timeline_matches_ltx_pipeline(pipe, ltx, guidance):
    ours, theirs = run_both(pipe, ltx, "a red ball rolls to the left", steps=4, guidance=guidance)
    assert ours.shape == theirs.shape == (1, 17, 3, 32, 32)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs diff {diff:.3g}"


def test_image_at_frame_0_matches_ltx_condition_pipeline(make_image):
    """i2v (an image card at frame 0, strength 1) = LTXConditionPipeline with the image at frame 0.

    Set up so both do the same thing: image_cond_noise_scale 0 (the pipeline's extra noise on the condition),
    the same schedule passed as timesteps (the pipeline's own default is its linear-quadratic one), and a VAE
    whose posterior std is exp(-15) (the pipeline encodes with a posterior *sample*, the engine the mode).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition
    from PIL import Image

    from engine.backends.ltx import LTXBackend
    from engine.video_io import read_image
    parts = tiny_components()
    parts["scheduler"] = FlowMatchEulerDiscreteScheduler()
    with torch.no_grad():  # the last encoder channel is the log-variance: -30 (clamp floor) makes std 3e-7
        conv = parts["vae"].encoder.conv_out.conv
        conv.weight[-1] = 0
        conv.bias[-1] = -30
    pipe = LTXConditionPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    ltx = LTXBackend.from_pipe(pipe, like="condition")
    image = make_image(w=32, h=32)
    tl = ops.i2v(image, "a red ball rolls", duration_s=2.0, **SIZE)
    plan = compile(tl, ltx)
    g = plan.grid
    assert plan.start_level.tolist() == [0, 1, 1, 1, 1]
    steps, guidance = 4, 3.0
    sigmas = torch.linspace(1, 0, steps + 1)                                 # (steps + 1,)
    noise = torch.randn((1, *plan.known.shape), generator=torch.Generator().manual_seed(0))
    ltx.frame_rate = g.fps
    x = sample(ltx.denoise, plan, sigmas, guidance, noise=noise, per_token=True)
    ours = (ltx.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)   # (1, N, 3, H, W)
    cond = LTXVideoCondition(image=Image.fromarray(read_image(image)), frame_index=0, strength=1.0)
    theirs = pipe(conditions=[cond], prompt="a red ball rolls", negative_prompt="", height=g.height, width=g.width,
                  num_frames=g.n_frames, frame_rate=int(g.fps), num_inference_steps=steps,
                  timesteps=(sigmas[:-1] * 1000).tolist(), guidance_scale=guidance, image_cond_noise_scale=0.0,
                  max_sequence_length=128, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).frames        # its noise: the same draw as ours
    assert ours.shape == theirs.shape
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs diff {diff:.3g}"  # measured 7e-7


def test_sigmas_are_the_pipelines(pipe, ltx):
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift, retrieve_timesteps
    steps, n = 6, 5 * 8 * 8
    c = pipe.scheduler.config
    mu = calculate_shift(n, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
    retrieve_timesteps(pipe.scheduler, steps, "cpu", None, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    assert torch.equal(ltx.sigmas(steps, n), pipe.scheduler.sigmas)
    s = ltx.sigmas(steps, n)
    assert s[0] == 1 and s[-1] == 0 and (s.diff() < 0).all()


def test_pack_unpack_round_trip_and_normalisation(ltx, pipe):
    x = torch.randn(2, 8, 3, 4, 6)
    assert torch.equal(ltx.pack(x), pipe._pack_latents(x, 1, 1))
    assert torch.equal(ltx.unpack(ltx.pack(x), 3, 4, 6), x)
    z = ltx.normalize(x)
    assert torch.allclose(z, pipe._normalize_latents(x, pipe.vae.latents_mean, pipe.vae.latents_std,
                                                     pipe.vae.config.scaling_factor))
    assert torch.allclose(ltx.denormalize(z), x, atol=1e-6)


def test_latent_spec_follows_the_vae(ltx):
    s = ltx.spec
    assert (s.channels, s.temporal_factor, s.spatial_factor, s.causal_first) == (8, 4, 4, True)
    assert s.snap_frames(16) == 17 and s.latent_frames(17) == 5
    assert s.frame_size((1, 1), 30) == (32, 32)


# ----------------------------------------------------------------------------- 2. gating
def test_cross_attention_outside_a_cards_span_ignores_its_text(ltx):
    """Block 0's cross-attention output on frames outside card 1 is bit-identical when card 1's text changes."""
    def plan_for(text1):
        return compile(ops.storyboard([TextCard(0.0, 1.0, "a red ball"), TextCard(1.0, 2.0, text1)], 2.0, **SIZE), ltx)

    pa, pb = plan_for("a blue box"), plan_for("a green cat")
    assert pa.text.shape == pb.text.shape and not torch.equal(pa.text, pb.text)
    seg = next(s for s in pa.segments if s.name == "cards[1]")
    outside = (pa.gate[:, seg.start:seg.end].amax(1) == 0).nonzero().flatten().tolist()   # latent frames
    inside = (pa.gate[:, seg.start:seg.end].amax(1) > 0).nonzero().flatten().tolist()
    assert outside and inside
    g = pa.grid
    per_frame = g.latent_h * g.latent_w
    x = torch.randn(1, 8, g.latent_frames, g.latent_h, g.latent_w, generator=torch.Generator().manual_seed(1))
    t = torch.full((1, g.latent_frames), 0.7)
    seen = []
    hook = ltx.transformer.transformer_blocks[0].attn2.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        for p in (pa, pb):
            ltx.denoise(x, t, p.text[None], p.gate[None])
    finally:
        hook.remove()
    oa, ob = (o.view(1, g.latent_frames, per_frame, -1) for o in seen)      # (1, F, h*w, D)
    assert torch.equal(oa[:, outside], ob[:, outside])
    assert not torch.allclose(oa[:, inside], ob[:, inside])                 # the card does reach its own frames


@pytest.mark.parametrize("closed_from", [None, 3, 1])
def test_gate_bias_per_frame_tokens(ltx, closed_from):
    """Latent frames x text tokens -> one bias row per video token (8x8 = 64 tokens a frame, frame-major).

        token l:      0 1 2 3 4 | 5 6      (5 global tokens | 2 card tokens)
        frames < k:   0 0 0 0 0 | 0 0
        frames >= k:  0 0 0 0 0 | -inf -inf
    With every frame alike (no card edge) the bias is one row per sample, (B, 1, L), as LTXPipeline's mask.
    """
    g = torch.ones(2, 5, 7)
    if closed_from is not None:
        g[:, closed_from:, 5:] = 0
    b = ltx.cross_attention_bias(g, 8, 8)
    if closed_from is None:
        assert b.shape == (2, 1, 7) and (b == 0).all()
        return
    k = closed_from * 64
    assert b.shape == (2, 5 * 64, 7)
    assert torch.isinf(b[:, k:, 5:]).all() and (b[:, k:, :5] == 0).all() and (b[:, :k] == 0).all()


# ----------------------------------------------------------------------------- 3. injection
def test_injected_frames_come_back_as_encoded_and_levels_are_honoured(ltx, make_video):
    from engine.video_io import fit, read_video, to_tensor
    clip = make_video("c.mp4", n=16, fps=FPS, w=32, h=32)
    tl = ops.extend(clip, seconds=1.0, context_s=1.0, **SIZE)              # 1 s kept, 1 s new
    plan = compile(tl, ltx)
    lv = plan.start_level
    # pixel frames 0-7 are the clip's last second: latent frames 0 (px 0) and 1 (px 1-4) kept whole, frame 2
    # (px 5-8) covered 3/4 so kept in proportion (level 0.25), the rest generated
    assert lv.tolist() == [0.0, 0.0, 0.25, 1.0, 1.0]
    kept = [0, 1]
    # the known latents are the real VAE's encoding of the source frames (pixel 8 holds the last covered frame)
    src = fit(read_video(clip), 32, 32)
    window = np.concatenate([src[8:16], src[15:16]])                         # (9, H, W, 3)
    z = ltx.encode_video(to_tensor(window)[None])[0]                        # (C, 3, h, w)
    assert torch.allclose(plan.known[:, :3], z, atol=1e-5)
    # after sampling, kept frames equal the known latents exactly; the rest moved
    _, x = generate_latents(tl, ltx, Settings(steps=3, guidance=1.0))
    assert torch.equal(x[0][:, kept], plan.known[:, kept])
    assert not torch.allclose(x[0][:, 2:], plan.known[:, 2:])
    # the partly kept frame stays near its source (it starts at level 0.25), unlike the generated ones
    err = (x[0] - plan.known).pow(2).mean((0, 2, 3))                        # (F,)
    assert err[2] < err[3] and err[2] < err[4]


def test_partial_levels_hold_frames_until_their_level(ltx):
    """Per-token timesteps: a frame whose start level is 0.5 is untouched by the steps above 0.5."""
    tl = ops.t2v("a ball", duration_s=2.0, **SIZE)
    plan = compile(tl, ltx)
    plan.start_level[:] = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0])
    plan.known.normal_(generator=torch.Generator().manual_seed(3))
    sig = ltx.sigmas(4, 5 * 64)
    seen = []
    noise = torch.randn(1, *plan.known.shape, generator=torch.Generator().manual_seed(4))  # (1, C, F, h, w)
    x = sample(ltx.denoise, plan, sig, 1.0, noise=noise, per_token=True,
               callback=lambda d: seen.append((d["t"], d["x"].clone())))
    start = 0.5 * plan.known[:, 1] + 0.5 * noise[0, :, 1]                   # (C, h, w) its start on the path
    held = [xs for t, xs in seen if t >= 0.5]
    assert held and all(torch.allclose(xs[0, :, 1], start, atol=1e-6) for xs in held)
    assert not torch.allclose(x[0, :, 1], start)                           # and it moves once t < 0.5
    assert torch.equal(x[0, :, 0], plan.known[:, 0])


# ----------------------------------------------------------------------------- 4. operations end to end
def test_operations_run_end_to_end(ltx, make_video):
    check_operations_end_to_end(ltx, make_video, FPS, SIZE)


# ----------------------------------------------------------------------------- 5. loading
def test_missing_or_incomplete_model_folder_is_one_line(tmp_path):
    from engine.backends.ltx import LTXBackend
    check_missing_folder(LTXBackend, "ltx", tmp_path)


def test_load_from_a_saved_folder_offline(tmp_path, pipe):
    from engine.backends.ltx import LTXBackend
    pipe.save_pretrained(tmp_path / "m")
    b = LTXBackend.load(tmp_path / "m", offload=True)
    assert b.spec == LTXBackend.from_pipe(pipe).spec
    t_ours, _ = b.encode_text(["a red ball"])[0]
    t_ref, _ = LTXBackend.from_pipe(pipe).encode_text(["a red ball"])[0]
    assert torch.equal(t_ours, t_ref)
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1                                 # (B, 3, N, H, W)
    assert torch.allclose(b.decode(b.encode_video(x)), LTXBackend.from_pipe(pipe).decode(
        LTXBackend.from_pipe(pipe).encode_video(x)), atol=1e-6)              # offload changes where, not what
    weights = tmp_path / "m" / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError) as e:
        LTXBackend.load(tmp_path / "m")
    assert str(tmp_path / "m") in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "m" / "vae" / "config.json").unlink()
    with pytest.raises(InputError, match="vae/config.json"):
        LTXBackend.load(tmp_path / "m")


# ----------------------------------------------------------------------------- 6. in the studio
def test_the_studio_offers_and_runs_a_configured_ltx_folder(tmp_path, pipe, monkeypatch):
    from engine.backends.registry import configured
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    monkeypatch.delenv("CINEPATCH_LTX_MODEL", raising=False)
    monkeypatch.delenv("CINEPATCH_MODELS", raising=False)
    assert "ltx" not in configured()
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    with pytest.raises(InputError, match="backend: 'ltx' is not set up here"):
        studio.submit("generate", {"prompt": "x"}, "ltx")
    pipe.save_pretrained(tmp_path / "models" / "ltx")
    monkeypatch.setenv("CINEPATCH_MODELS", str(tmp_path / "models"))
    assert configured()[1:] == ["ltx"]
    job = studio.submit("generate", {"prompt": "a red ball", "duration_s": 1.0, "steps": 2, **SIZE}, "ltx")
    row = studio.wait(job)
    assert row["state"] == "done" and row["backend"] == "ltx", row
    video = lib.videos_of_job(job)[0]
    assert video["backend"] == "ltx" and (video["width"], video["height"]) == (32, 32)
    assert studio.wait(studio.retry(job))["backend"] == "ltx"       # a retry runs on the job's own backend
    # the storyboard tab's plan table is compiled for the picked model's latent grid
    from engine.requests import build
    story = {"duration_s": 2.0, "fps": 8.0, "aspect": "1:1", "resolution": 32,
             "cards": [{"kind": "text", "start_s": 0.0, "end_s": 1.0, "text": "a red ball"},
                       {"kind": "text", "start_s": 1.0, "end_s": 2.0, "text": "a blue cube"}]}
    tl = build("storyboard", {"storyboard": story}, lib.resolve)[0]
    assert studio.plan_rows(story, "ltx") == compile(tl, studio.queue("ltx").backend).rows()
    assert len(studio.plan_rows(story, "ltx")) != len(studio.plan_rows(story))  # 8x vs the reference's time factor
    # the page says what a duration becomes on the picked model: frames made by its rule, frames kept
    spec = studio.queue("ltx").backend.spec
    made = spec.snap_frames(16)
    assert made > 16 and (made - 1) % spec.temporal_factor == 0
    assert f"makes {made} and keeps the first 16" in studio.frames_note("ltx", 2.0, 8)
    assert "exactly" in studio.frames_note("ltx", made / 8, 8)


def test_the_page_reads_the_models_spec_without_loading_it(tmp_path, pipe, monkeypatch):
    from engine.backends.ltx import LTXBackend
    pipe.save_pretrained(tmp_path / "models" / "ltx")
    check_spec_without_loading(LTXBackend, "ltx", tmp_path / "models" / "ltx", tmp_path, monkeypatch,
                               LTXBackend.from_pipe(pipe).spec)
