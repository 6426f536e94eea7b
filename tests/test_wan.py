"""The wan backend (issue 5) on tiny random configurations of diffusers' own Wan classes, on the CPU.

Nothing is downloaded: the transformer and VAE are diffusers' own test configs, the UMT5 encoder is built
from a small config with random weights, and the tokenizer is the BERT tokenizer shipped in the MiniLM
package.
"""
from contextlib import contextmanager

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
SIZE = dict(fps=FPS, aspect="1:1", resolution=32)  # 32x32 px -> 4x4 latent cells (8x VAE) -> 2x2 tokens a frame
SEQ = 512                                         # WanPipeline's max_sequence_length


def tiny_components(seed: int = 0) -> dict:
    """A WanPipeline's components with tiny random weights (transformer and VAE: diffusers' test configs)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                                               decoder_start_token_id=0)).eval()
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    with torch.no_grad():  # non-trivial statistics so (de)normalisation is really exercised
        vae.register_to_config(latents_mean=(torch.randn(16) * 0.1).tolist(),
                               latents_std=(torch.rand(16) + 0.5).tolist())
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32).eval()
    # Any zero-initialised table would hide bugs (timesteps, text): make every part of the model count.
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)  # diffusers' Wan test scheduler
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def tiny_pipe(seed: int = 0):
    from diffusers import WanPipeline
    pipe = WanPipeline(**tiny_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


@pytest.fixture(scope="module")
def wan(pipe):
    from engine.backends.wan import WanBackend
    return WanBackend.from_pipe(pipe)


@contextmanager
def diffusers_processors(transformer):
    """diffusers' own WanAttnProcessor everywhere for the block (the backend shares the pipe's transformer)."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor
    saved = transformer.attn_processors
    transformer.set_attn_processor(WanAttnProcessor())
    try:
        yield
    finally:
        transformer.set_attn_processor(saved)


def run_both(pipe, wan, prompt: str, steps: int, guidance: float, duration_s: float = 2.0, seed: int = 0):
    """The same job through the engine and through WanPipeline -> frames of each, (B, N, 3, H, W) in [0, 1]."""
    tl = ops.t2v(prompt, duration_s=duration_s, seed=seed, **SIZE)
    plan = compile(tl, wan)
    g = plan.grid
    noise = torch.randn((1, *plan.known.shape), generator=torch.Generator().manual_seed(seed))  # (1, C, F, h, w)
    sigmas = wan.sigmas(steps, g.latent_frames * g.latent_h * g.latent_w)
    x = sample(wan.denoise, plan, sigmas, guidance, noise=noise, per_token=False, cfg_batch=wan.cfg_batch)
    _, x_api = generate_latents(tl, wan, Settings(steps=steps, guidance=guidance))  # the hook: same schedule, noise
    assert torch.equal(x_api, x)
    ours = (wan.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)   # (1, N, 3, H, W)
    with diffusers_processors(pipe.transformer):
        theirs = pipe(prompt=prompt, negative_prompt="", height=g.height, width=g.width, num_frames=g.n_frames,
                      num_inference_steps=steps, guidance_scale=guidance, latents=noise.clone(),
                      max_sequence_length=SEQ, output_type="pt").frames            # (1, N, 3, H, W)
    return ours, theirs


# ----------------------------------------------------------------------------- 1. conformance
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_text_only_timeline_matches_wan_pipeline(pipe, wan, guidance):
    ours, theirs = run_both(pipe, wan, "a red ball rolls to the left", steps=4, guidance=guidance)
    assert ours.shape == theirs.shape == (1, 17, 3, 32, 32)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs diff {diff:.3g}"  # measured 0 (guidance 1) and 1.8e-7 (guidance 3)


def test_sigmas_are_the_pipelines(pipe, wan):
    steps = 6
    pipe.scheduler.set_timesteps(steps)
    assert torch.equal(wan.sigmas(steps, 5 * 16), pipe.scheduler.sigmas.float())
    s = wan.sigmas(steps, 5 * 16)
    assert s[0] == 1 and s[-1] == 0 and (s.diff() < 0).all()
    # the model is told sigma * num_train_timesteps: the scheduler's timesteps
    assert torch.allclose(s[:-1] * wan.num_train_timesteps, pipe.scheduler.timesteps.float())


def test_sigmas_of_wans_unipc_scheduler(pipe):
    """Wan's released folders ship UniPC with flow sigmas: its sigmas (shifted, ending at 0) drive the engine."""
    from diffusers import UniPCMultistepScheduler

    from engine.backends.wan import WanBackend
    from diffusers import WanPipeline
    uni = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    b = WanBackend.from_pipe(WanPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, uni, pipe.transformer))
    s = b.sigmas(8, 80)
    uni.set_timesteps(8)
    assert torch.equal(s, uni.sigmas.float()) and s.shape == (9,)
    assert s[-1] == 0 and (s.diff() < 0).all() and s[0] > 0.99
    assert b.shift(80) == 3.0


def test_text_encoding_is_the_pipelines(pipe, wan):
    prompts = ["a red  ball ", ""]
    with torch.no_grad():  # as in WanPipeline.__call__ (autograd changes the last bits)
        ref = pipe._get_t5_prompt_embeds(prompts, max_sequence_length=SEQ)  # (2, SEQ, D)
    enc = wan.encode_text(prompts)
    for (tok, mask), r in zip(enc, ref):
        assert tok.shape == (SEQ, 32) and mask.all()
        assert torch.equal(tok, r)
    n = len(pipe.tokenizer("").input_ids)                                  # "" is its special tokens, then zeros
    assert (enc[1][0][n:] == 0).all() and (enc[1][0][:n] != 0).any()


def test_normalisation_is_the_pipelines(wan, pipe):
    x = torch.randn(2, 16, 3, 4, 6)                                        # (B, C, F, h, w)
    c = pipe.vae.config
    mean = torch.tensor(c.latents_mean).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(c.latents_std).view(1, 16, 1, 1, 1)
    assert torch.equal(wan.denormalize(x), x / inv_std + mean)            # WanPipeline's decode arithmetic
    assert torch.allclose(wan.denormalize(wan.normalize(x)), x, atol=1e-6)


def test_latent_spec_follows_the_vae(wan):
    s = wan.spec
    assert (s.channels, s.temporal_factor, s.spatial_factor, s.causal_first) == (16, 4, 8, True)
    assert s.per_token_timestep is False and s.multiple == 16
    assert s.snap_frames(16) == 17 and s.latent_frames(17) == 5
    assert s.frame_size((1, 1), 30) == (32, 32)


def test_only_cross_attention_gets_the_gated_processor(wan):
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    from engine.backends.wan import GatedWanCrossAttnProcessor
    procs = wan.transformer.attn_processors
    assert procs and all(isinstance(p, GatedWanCrossAttnProcessor) for n, p in procs.items() if ".attn2." in n)
    assert all(type(p) is WanAttnProcessor for n, p in procs.items() if ".attn1." in n)


def test_gated_processor_is_diffusers_when_open_and_masks_when_closed(wan):
    """All open: bit-identical to WanAttnProcessor. A bias of -inf on tokens 3.. = attention to tokens 0..2 alone."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor
    attn = wan.transformer.blocks[0].attn2
    h = torch.randn(2, 20, 24, generator=torch.Generator().manual_seed(0))  # (B, S, D)
    e = torch.randn(2, 7, 24, generator=torch.Generator().manual_seed(1))   # (B, L, D) (after text_embedder)
    ours = wan.processor(attn, h, e)
    assert torch.equal(ours, WanAttnProcessor()(attn, h, e))
    bias = torch.zeros(2, 1, 1, 7)
    bias[..., 3:] = float("-inf")
    with wan._gated(bias):
        gated = wan.processor(attn, h, e)
    assert wan.processor.bias is None                                      # cleared after the call
    assert torch.allclose(gated, WanAttnProcessor()(attn, h, e[:, :3]), atol=1e-6)


# ----------------------------------------------------------------------------- 2. gating
def test_cross_attention_outside_a_cards_span_ignores_its_text(wan):
    """Block 0's cross-attention output on frames outside card 1 is bit-identical when card 1's text changes."""
    def plan_for(text1):
        return compile(ops.storyboard([TextCard(0.0, 1.0, "a red ball"), TextCard(1.0, 2.0, text1)], 2.0, **SIZE), wan)

    pa, pb = plan_for("a blue box"), plan_for("a green cat")
    assert pa.text.shape == pb.text.shape and not torch.equal(pa.text, pb.text)
    seg = next(s for s in pa.segments if s.name == "cards[1]")
    outside = (pa.gate[:, seg.start:seg.end].amax(1) == 0).nonzero().flatten().tolist()   # latent frames
    inside = (pa.gate[:, seg.start:seg.end].amax(1) > 0).nonzero().flatten().tolist()
    assert outside and inside
    g = pa.grid
    per_frame = (g.latent_h // 2) * (g.latent_w // 2)                       # tokens a frame after 2x2 patching
    x = torch.randn(1, 16, g.latent_frames, g.latent_h, g.latent_w, generator=torch.Generator().manual_seed(1))
    t = torch.full((1, g.latent_frames), 0.7)
    seen = []
    hook = wan.transformer.blocks[0].attn2.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        for p in (pa, pb):
            wan.denoise(x, t, p.text[None], p.gate[None])
    finally:
        hook.remove()
    oa, ob = (o.view(1, g.latent_frames, per_frame, -1) for o in seen)      # (1, F, h*w, D)
    assert torch.equal(oa[:, outside], ob[:, outside])
    assert not torch.allclose(oa[:, inside], ob[:, inside])                 # the card does reach its own frames


@pytest.mark.parametrize("closed_from", [None, 3, 1])
def test_gate_bias_per_frame_tokens(wan, closed_from):
    """Latent frames x text tokens -> one bias row per video token (4x4 cells = 2x2 = 4 tokens a frame).

        token l:      0 1 2 3 4 | 5 6      (5 global tokens | 2 card tokens)
        frames < k:   0 0 0 0 0 | 0 0
        frames >= k:  0 0 0 0 0 | -inf -inf
    With every token open everywhere there is no bias at all (diffusers' own path).
    """
    g = torch.ones(2, 5, 7)
    if closed_from is not None:
        g[:, closed_from:, 5:] = 0
    b = wan.cross_attention_bias(g, 4, 4)
    if closed_from is None:
        assert b is None
        return
    k = closed_from * 4
    assert b.shape == (2, 1, 5 * 4, 7)
    assert torch.isinf(b[..., k:, 5:]).all() and (b[..., k:, :5] == 0).all() and (b[..., :k, :] == 0).all()
    same = torch.ones(2, 5, 7)
    same[..., 6] = 0                                                        # every frame alike: one row
    assert wan.cross_attention_bias(same, 4, 4).shape == (2, 1, 1, 7)


# ----------------------------------------------------------------------------- 3. injection
def test_injected_frames_come_back_as_encoded_and_levels_are_honoured(wan, make_video):
    from engine.video_io import fit, read_video, to_tensor
    clip = make_video("c.mp4", n=16, fps=FPS, w=32, h=32)
    tl = ops.extend(clip, seconds=1.0, context_s=1.0, seed=0, **SIZE)      # 1 s kept, 1 s new; seeded
    plan = compile(tl, wan)
    lv = plan.start_level
    # pixel frames 0-7 are the clip's last second: latent frames 0 (px 0) and 1 (px 1-4) kept whole, frame 2
    # (px 5-8) covered 3/4 so kept in proportion (level 0.25), the rest generated
    assert lv.tolist() == [0.0, 0.0, 0.25, 1.0, 1.0]
    kept = [0, 1]
    # the known latents are the real VAE's encoding of the source frames (pixel 8 holds the last covered frame)
    src = fit(read_video(clip), 32, 32)
    window = np.concatenate([src[8:16], src[15:16]])                         # (9, H, W, 3)
    z = wan.encode_video(to_tensor(window)[None])[0]                        # (C, 3, h, w)
    assert torch.allclose(plan.known[:, :3], z, atol=1e-5)
    # after sampling, kept frames equal the known latents exactly; the rest moved
    _, x = generate_latents(tl, wan, Settings(steps=3, guidance=1.0))
    assert torch.equal(x[0][:, kept], plan.known[:, kept])
    assert not torch.allclose(x[0][:, 2:], plan.known[:, 2:])
    # the partly kept frame stays near its source (it is held on its path down to 0.25), unlike the generated ones
    err = (x[0] - plan.known).pow(2).mean((0, 2, 3))                        # (F,)
    assert err[2] < err[3] and err[2] < err[4]


def test_replacement_holds_frames_on_their_path_until_their_level(wan):
    """One t for all frames: a frame with start level 0.5 sits at (1-t) known + t eps while t > 0.5, then moves."""
    tl = ops.t2v("a ball", duration_s=2.0, **SIZE)
    plan = compile(tl, wan)
    plan.start_level[:] = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0])
    plan.known.normal_(generator=torch.Generator().manual_seed(3))
    sig = torch.linspace(1, 0, 5)                                           # t = 1, .75, .5, .25, 0
    seen = []
    noise = torch.randn(1, *plan.known.shape, generator=torch.Generator().manual_seed(4))  # (1, C, F, h, w)
    ts = []
    orig = wan.denoise
    x = sample(lambda *a: (ts.append(a[1].clone()), orig(*a))[1], plan, sig, 1.0, noise=noise, per_token=False,
               callback=lambda d: seen.append((d["t"], d["x"].clone())))
    assert all(bool((t == t[:, :1]).all()) for t in ts)                   # Wan is told one t per sample
    for t, xs in seen:
        if t > 0.5:  # the step that reaches 0.5 is already the model's
            on_path = (1 - t) * plan.known[:, 1] + t * noise[0, :, 1]       # (C, h, w)
            assert torch.allclose(xs[0, :, 1], on_path, atol=1e-6), t
    assert not torch.allclose(x[0, :, 1], plan.known[:, 1])                # it moved once t < 0.5
    assert torch.equal(x[0, :, 0], plan.known[:, 0])                       # level 0: exactly the known latents


# ----------------------------------------------------------------------------- 4. operations end to end
def test_operations_run_end_to_end(wan, make_video):
    check_operations_end_to_end(wan, make_video, FPS, SIZE)


# ----------------------------------------------------------------------------- 5. loading
def test_missing_or_incomplete_model_folder_is_one_line(tmp_path):
    from engine.backends.wan import WanBackend
    check_missing_folder(WanBackend, "wan", tmp_path)


def test_model_folder_from_the_environment(tmp_path, monkeypatch):
    from engine.backends.wan import WanBackend, default_model_path
    monkeypatch.delenv("CINEPATCH_WAN_MODEL", raising=False)
    monkeypatch.setenv("CINEPATCH_MODELS", str(tmp_path))
    assert default_model_path() == str(tmp_path / "wan")
    with pytest.raises(InputError, match=str(tmp_path / "wan")):
        WanBackend.load()
    monkeypatch.setenv("CINEPATCH_WAN_MODEL", str(tmp_path / "w21"))
    assert default_model_path() == str(tmp_path / "w21")


def test_image_conditioned_models_are_refused(pipe):
    from diffusers import WanTransformer3DModel

    from engine.backends.wan import WanBackend
    i2v = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
                                out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=1,
                                image_dim=4, added_kv_proj_dim=24, rope_max_seq_len=32)
    with pytest.raises(InputError, match="i2v") as e:
        WanBackend(i2v, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config))
    assert "\n" not in str(e.value)


def test_load_from_a_saved_folder_offline(tmp_path, pipe):
    from engine.backends.wan import WanBackend
    with diffusers_processors(pipe.transformer):  # save diffusers' own model, not one with our processor
        pipe.save_pretrained(tmp_path / "m")
    b = WanBackend.load(tmp_path / "m", offload=True)
    ref = WanBackend.from_pipe(pipe)
    assert b.spec == ref.spec
    t_ours, _ = b.encode_text(["a red ball"])[0]
    t_ref, _ = ref.encode_text(["a red ball"])[0]
    assert torch.equal(t_ours, t_ref)
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1                                 # (B, 3, N, H, W)
    assert torch.allclose(b.decode(b.encode_video(x)), ref.decode(ref.encode_video(x)), atol=1e-6)
    assert torch.equal(b.sigmas(4, 80), ref.sigmas(4, 80))
    assert b.transformer.blocks[0].norm2.weight.dtype == torch.float32   # diffusers' float32 modules kept
    z = torch.randn(1, 16, 2, 4, 4)                                         # (B, C, F, h, w)
    text, gate = torch.randn(1, 7, 32), torch.ones(1, 2, 7)
    gate[..., 5:] = 0
    assert torch.equal(b.denoise(z, torch.full((1, 2), 0.5), text, gate),
                       ref.denoise(z, torch.full((1, 2), 0.5), text, gate))  # the same weights, gated the same
    for part in ("transformer", "vae"):  # the transformer goes through the accelerate-free loader here
        weights = tmp_path / "m" / part / "diffusion_pytorch_model.safetensors"
        good = weights.read_bytes()
        weights.write_bytes(b"not a safetensors file")
        with pytest.raises(InputError) as e:
            WanBackend.load(tmp_path / "m")
        assert str(tmp_path / "m") in str(e.value) and "\n" not in str(e.value)
        if part == "transformer":
            weights.write_bytes(good)
    (tmp_path / "m" / "vae" / "config.json").unlink()
    with pytest.raises(InputError, match="vae/config.json"):
        WanBackend.load(tmp_path / "m")


def test_the_page_reads_the_models_spec_without_loading_it(tmp_path, pipe, monkeypatch):
    from engine.backends.wan import WanBackend
    with diffusers_processors(pipe.transformer):
        pipe.save_pretrained(tmp_path / "models" / "wan")
    check_spec_without_loading(WanBackend, "wan", tmp_path / "models" / "wan", tmp_path, monkeypatch,
                               WanBackend.from_pipe(pipe).spec)
