"""Wan 2.2 (issue 22): TI2V-5B (`wan22-5b`, per-token timesteps) and A14B (`wan22-14b`, two experts), on tiny
random configurations of diffusers' own Wan classes, on the CPU.

The 5B's VAE is diffusers' Wan 2.2 test config (48 channels, 2x2 pixel patches, 16x spatial); the A14B has
two transformers of the 2.1 test config. The engine must give the frames of WanPipeline /
WanImageToVideoPipeline for the same components, latents, schedule and guidance.
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
from tests.test_wan import SEQ, diffusers_processors, tiny_components  # noqa: E402

FPS = 8
SIZE_5B = dict(fps=FPS, aspect="1:1", resolution=64)  # 64 px -> 4x4 latent cells (16x VAE) -> 2x2 tokens a frame
SIZE_14B = dict(fps=FPS, aspect="1:1", resolution=32)
BOUNDARY = 0.6  # A14B's switch, away from any of the 4 steps' timesteps (WanPipeline compares t >= 0.6 * 1000)


def tiny_5b(seed: int = 0) -> dict:
    """A Wan 2.2 TI2V-5B pipeline's components: diffusers' Wan 2.2 VAE test config, a 48-channel transformer."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    c = tiny_components(seed)
    torch.manual_seed(seed)
    c["vae"] = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                                latents_mean=(torch.randn(48) * 0.1).tolist(), latents_std=(torch.rand(48) + 0.5).tolist(),
                                dim_mult=[1, 1, 1, 1], num_res_blocks=1, scale_factor_spatial=16,
                                scale_factor_temporal=4, temperal_downsample=[False, True, True]).eval()
    c["transformer"] = _transformer(48)
    return c


def _transformer(channels: int):
    from diffusers import WanTransformer3DModel
    t = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=channels,
                              out_channels=channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
                              cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
    with torch.no_grad():  # zero-initialised tables would hide bugs in timesteps and text
        for p in t.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return t


def tiny_14b(seed: int = 0) -> dict:
    c = tiny_components(seed)
    torch.manual_seed(seed + 1)
    return {**c, "transformer_2": _transformer(16)}


@pytest.fixture(scope="module")
def pipe5b():
    from diffusers import WanPipeline
    pipe = WanPipeline(**tiny_5b(), expand_timesteps=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe14b():
    from diffusers import WanPipeline
    pipe = WanPipeline(**tiny_14b(), boundary_ratio=BOUNDARY)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def wan5b(pipe5b):
    from engine.backends.wan import WanBackend
    return WanBackend.from_pipe(pipe5b)


@pytest.fixture(scope="module")
def wan14b(pipe14b):
    from engine.backends.wan import WanBackend
    return WanBackend.from_pipe(pipe14b)


def engine_frames(backend, tl, steps, guidance, noise=None):
    """The engine's frames (1, N, 3, H, W) in [0, 1] and its noise (1, C, F, h, w) for a timeline, seed 0."""
    plan = compile(tl, backend)
    g = plan.grid
    if noise is None:
        noise = torch.randn((1, *plan.known.shape), generator=torch.Generator().manual_seed(0))
    sigmas = backend.sigmas(steps, g.latent_frames * g.latent_h * g.latent_w)
    x = sample(backend.denoise, plan, sigmas, guidance, noise=noise, per_token=backend.spec.per_token_timestep,
               cfg_batch=backend.cfg_batch)
    backend.last_latents = x
    return (backend.decode(x) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4), noise, g


def both_experts(pipe) -> list:
    return [pipe.transformer, pipe.transformer_2] if getattr(pipe, "transformer_2", None) is not None else [pipe.transformer]


def pipeline_frames(pipe, noise, g, prompt, steps, guidance, **kw):
    """WanPipeline's frames (1, N, 3, H, W) with diffusers' own processors on every expert."""
    from contextlib import ExitStack

    from diffusers import WanPipeline
    with ExitStack() as stack, torch.no_grad():
        for t in both_experts(pipe):
            stack.enter_context(diffusers_processors(t))
        # WanPipeline's own prompt encoding (the i2v pipeline's needs ftfy, not installed here)
        embeds = [WanPipeline._get_t5_prompt_embeds(pipe, p, max_sequence_length=SEQ) for p in (prompt, "")]
        return pipe(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], height=g.height, width=g.width,
                    num_frames=g.n_frames,
                    num_inference_steps=steps, guidance_scale=guidance, latents=noise.clone(),
                    max_sequence_length=SEQ, output_type="pt", **kw).frames


# ----------------------------------------------------------------------------- 1. conformance
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_wan22_5b_text_only_matches_wan_pipeline(pipe5b, wan5b, guidance):
    tl = ops.t2v("a red ball rolls to the left", duration_s=2.0, seed=0, **SIZE_5B)
    ours, noise, g = engine_frames(wan5b, tl, 4, guidance)
    theirs = pipeline_frames(pipe5b, noise, g, "a red ball rolls to the left", 4, guidance)
    assert ours.shape == theirs.shape == (1, 17, 3, 64, 64)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs diff {diff:.3g}"
    _, x_api = generate_latents(tl, wan5b, Settings(steps=4, guidance=guidance))  # the engine's own path: same
    assert torch.equal(x_api, wan5b.last_latents)


def test_wan22_5b_image_at_frame_0_matches_wan_i2v_pipeline(pipe5b, wan5b, make_image):
    """An image card at 0, strength 1 = WanImageToVideoPipeline(expand_timesteps=True): the first latent frame is
    the image's encoding (posterior mode, both) and its tokens are told timestep 0 at every step."""
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    from engine.video_io import read_image
    image = make_image(w=64, h=64)
    tl = ops.i2v(image, "a red ball rolls", duration_s=2.0, seed=0, fps=FPS, resolution=64)
    assert compile(tl, wan5b).start_level.tolist() == [0, 1, 1, 1, 1]
    ours, noise, g = engine_frames(wan5b, tl, 4, 3.0)
    i2v = WanImageToVideoPipeline(pipe5b.tokenizer, pipe5b.text_encoder, pipe5b.vae, pipe5b.scheduler,
                                  transformer=pipe5b.transformer, expand_timesteps=True)
    i2v.set_progress_bar_config(disable=True)
    theirs = pipeline_frames(i2v, noise, g, "a red ball rolls", 4, 3.0, image=Image.fromarray(read_image(image)))
    assert ours.shape == theirs.shape == (1, 17, 3, 64, 64)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs diff {diff:.3g}"


def test_wan22_5b_is_told_each_frames_level_on_its_tokens(wan5b):
    """Per-token timesteps: latent frame f's level x 1000 on each of its 2x2 tokens, frame-major."""
    seen = []
    hook = wan5b.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["timestep"]), with_kwargs=True)
    x = torch.randn(1, 48, 3, 4, 4)                                         # (B, C, F, h, w)
    try:
        wan5b.denoise(x, torch.tensor([[0.0, 0.25, 0.9]]), torch.randn(1, 7, 32), torch.ones(1, 3, 7))
    finally:
        hook.remove()
    assert seen[0].shape == (1, 12)
    assert seen[0][0].tolist() == [0.0] * 4 + [250.0] * 4 + [pytest.approx(900.0)] * 4
    assert wan5b.spec.per_token_timestep and wan5b.spec.spatial_factor == 16 and wan5b.spec.multiple == 32


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_wan22_14b_switches_experts_like_wan_pipeline(pipe14b, wan14b, guidance):
    """Same frames as WanPipeline with transformer / transformer_2 and boundary_ratio; both experts really run."""
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, m in enumerate(both_experts(pipe14b))]
    tl = ops.t2v("a red ball rolls to the left", duration_s=2.0, seed=0, **SIZE_14B)
    try:
        ours, noise, g = engine_frames(wan14b, tl, 4, guidance)
        ours_calls, calls[:] = list(calls), []
        theirs = pipeline_frames(pipe14b, noise, g, "a red ball rolls to the left", 4, guidance)
    finally:
        for h in hooks:
            h.remove()
    assert ours_calls == calls and 0 in calls and 1 in calls, (ours_calls, calls)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs diff {diff:.3g}"


def test_wan22_14b_expert_follows_the_boundary(wan14b):
    for level, want in ((1.0, wan14b.transformer), (0.61, wan14b.transformer), (0.59, wan14b.transformer_2)):
        assert wan14b.expert(torch.tensor([level * 1000.0])) is want, level


# ----------------------------------------------------------------------------- 2. gating
@pytest.mark.parametrize("which", ["5b", "14b-low-noise"])
def test_wan22_cross_attention_outside_a_cards_span_ignores_its_text(wan5b, wan14b, which):
    """Each expert's block-0 cross-attention output on frames outside card 1 is bit-identical when card 1's
    text changes, and differs inside it."""
    wan, size, t_level = (wan5b, SIZE_5B, 0.7) if which == "5b" else (wan14b, SIZE_14B, 0.3)

    def plan_for(text1):
        return compile(ops.storyboard([TextCard(0.0, 1.0, "a red ball"), TextCard(1.0, 2.0, text1)], 2.0, **size), wan)

    pa, pb = plan_for("a blue box"), plan_for("a green cat")
    seg = next(s for s in pa.segments if s.name == "cards[1]")
    outside = (pa.gate[:, seg.start:seg.end].amax(1) == 0).nonzero().flatten().tolist()
    inside = (pa.gate[:, seg.start:seg.end].amax(1) > 0).nonzero().flatten().tolist()
    assert outside and inside
    g = pa.grid
    x = torch.randn(1, wan.spec.channels, g.latent_frames, g.latent_h, g.latent_w,
                    generator=torch.Generator().manual_seed(1))
    t = torch.full((1, g.latent_frames), t_level)
    model = wan.expert(t.amax(1) * 1000)
    assert model is (wan.transformer if which == "5b" else wan.transformer_2)
    seen = []
    hook = model.blocks[0].attn2.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        for p in (pa, pb):
            wan.denoise(x, t, p.text[None], p.gate[None])
    finally:
        hook.remove()
    oa, ob = (o.view(1, g.latent_frames, -1, o.shape[-1]) for o in seen)  # (1, F, h*w, D)
    assert torch.equal(oa[:, outside], ob[:, outside])
    assert not torch.allclose(oa[:, inside], ob[:, inside])


# ----------------------------------------------------------------------------- 3. folders and the picker
def save(pipe, folder):
    from contextlib import ExitStack
    with ExitStack() as stack:  # diffusers' own processors in the saved model, not ours
        for t in both_experts(pipe):
            stack.enter_context(diffusers_processors(t))
        pipe.save_pretrained(folder)
    return folder


def test_wan22_folders_load_list_and_are_refused_by_the_wrong_backend(tmp_path, pipe5b, pipe14b, wan5b, wan14b,
                                                                      monkeypatch):
    from engine.backends.registry import configured, load_backend, spec_of
    for name in ("wan", "wan22-5b", "wan22-14b", "ltx"):
        monkeypatch.delenv(f"CINEPATCH_{name.upper().replace('-', '_')}_MODEL", raising=False)
    monkeypatch.setenv("CINEPATCH_MODELS", str(tmp_path))
    assert not {"wan22-5b", "wan22-14b"} & set(configured())
    f5, f14 = save(pipe5b, tmp_path / "wan22-5b"), save(pipe14b, tmp_path / "wan22-14b")
    assert configured()[1:] == ["wan22-5b", "wan22-14b"]              # what the picker and /v1 `model` list
    assert spec_of("wan22-5b") == wan5b.spec and spec_of("wan22-14b") == wan14b.spec
    b5, b14 = load_backend("wan22-5b", device="cpu"), load_backend("wan22-14b", device="cpu")  # as the tiny refs
    assert (b5.name, b5.expand_timesteps, b14.name, b14.boundary_ratio) == ("wan22-5b", True, "wan22-14b", BOUNDARY)
    x, t = torch.randn(1, 16, 2, 4, 4), torch.full((1, 2), 0.3)      # the low-noise expert, loaded from its folder
    text, gate = torch.randn(1, 7, 32), torch.ones(1, 2, 7)
    assert torch.equal(b14.denoise(x, t, text, gate), wan14b.denoise(x, t, text, gate))
    # the wrong backend for a folder: one line naming model_index.json, the backend and the right one
    for name, folder, right in (("wan22-14b", f5, "wan22-5b"), ("wan", f14, "wan22-14b"), ("wan22-5b", f14, "wan22-14b")):
        with pytest.raises(InputError) as e:
            load_backend(name, model=str(folder))
        msg = str(e.value)
        assert str(folder / "model_index.json") in msg and f"the {name} backend" in msg and f"use the {right}" in msg
        assert "\n" not in msg
    # a missing expert: named with its backend
    for f in (f14 / "transformer_2").iterdir():
        f.unlink()
    with pytest.raises(InputError, match=r"incomplete for the wan22-14b backend: missing transformer_2/"):
        load_backend("wan22-14b")
    (f5 / "model_index.json").write_text("{not json")
    with pytest.raises(InputError, match=r"model_index.json is not valid JSON .*wan22-5b"):
        spec_of("wan22-5b")


def test_wan22_image_conditioned_a14b_is_refused(pipe14b):
    """Wan 2.2 I2V-A14B concatenates the image's latents on channels (36 in): not a mapping the engine has."""
    from engine.backends.wan import WanBackend
    with pytest.raises(InputError, match="image-conditioned") as e:
        WanBackend(_transformer(16), pipe14b.vae, pipe14b.text_encoder, pipe14b.tokenizer, {},
                   transformer_2=_transformer_i2v(), boundary_ratio=0.9)
    assert "wan22-14b" in str(e.value)


def _transformer_i2v():
    from diffusers import WanTransformer3DModel
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
                                 out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=1,
                                 rope_max_seq_len=32)
