"""Plan compiler: latent mapping, text gates, media injection and overlap rules."""
import numpy as np
import pytest
import torch

from engine.backends.base import LatentSpec
from engine.backends.reference import ReferenceBackend
from engine.plan import compile, make_grid, span_gate, text_layout
from engine.timeline import Curve, ImageCard, TextCard, Timeline, VideoCard


# ----------------------------------------------------------------------------- latent mapping
@pytest.mark.parametrize("tf,causal", [(1, False), (2, True), (4, True), (8, True), (4, False)])
def test_pixel_latent_mapping_partitions_frames(tf, causal):
    spec = LatentSpec(channels=4, temporal_factor=tf, spatial_factor=8, causal_first=causal)
    for n in range(1, 40):
        N = spec.snap_frames(n)
        assert N >= n and N == spec.snap_frames(N)
        F = spec.latent_frames(N)
        seen = []
        for f in range(F):
            a, b = spec.pixel_range(f)
            seen += list(range(a, b))
            assert all(spec.latent_index(k) == f for k in range(a, b))
        assert seen == list(range(N))  # every pixel frame in exactly one latent frame, in order


def test_causal_snap_counts():
    spec = LatentSpec(channels=4, temporal_factor=8, spatial_factor=32)
    assert [spec.snap_frames(n) for n in (1, 2, 9, 10, 121)] == [1, 9, 9, 17, 121]


@pytest.mark.parametrize("aspect,expected", [((16, 9), (112, 64)), ((1, 1), (64, 64)), ((9, 16), (64, 112))])
def test_frame_size_for_the_three_aspects(aspect, expected):
    spec = LatentSpec(channels=4, temporal_factor=2, spatial_factor=8, size_multiple=16)
    assert spec.frame_size(aspect, 64) == expected


def test_output_frames_are_exactly_what_was_asked(backend):
    g = make_grid(Timeline(duration_s=2, fps=12), backend.spec)
    assert (g.n_frames, g.out_frames, g.latent_frames) == (25, 24, 13)


# ----------------------------------------------------------------------------- text gates
def test_two_cards_hard_edges(backend):
    """Reference spec: tf=2, causal. 2 s at 6 fps -> 12 frames -> 13 pixel frames, 7 latent frames.

    latent f:   0   1     2     3   | 4     5     6
    pixels:     0   1-2   3-4   5-6 | 7-8   9-10  11-12
    tokens:     [card0: <s> red ball][card1: <s> blue box]   (no global, no empty needed)
    """
    tl = Timeline(duration_s=2, fps=6, cards=[TextCard(0, 7 / 6, "red ball"), TextCard(7 / 6, 2, "blue box")])
    p = compile(tl, backend)
    assert [s.name for s in p.segments] == ["cards[0]", "cards[1]"]
    s0, s1 = p.segments
    gate = p.gate.numpy()
    assert (gate[:4, s0.start:s0.end] == 1).all() and (gate[:4, s1.start:s1.end] == 0).all()
    assert (gate[4:, s0.start:s0.end] == 0).all() and (gate[4:, s1.start:s1.end] == 1).all()
    assert (p.gate.amax(1) > 0).all()


def test_gap_falls_back_to_the_empty_prompt(backend):
    tl = Timeline(duration_s=2, fps=6, cards=[TextCard(0.5, 1.0, "red ball")])
    p = compile(tl, backend)
    names = [s.name for s in p.segments]
    assert names == ["cards[0]", "empty"]
    sg = p.segment_gates()
    np.testing.assert_allclose(sg[:, 0] + sg[:, 1], 1.0)  # card or empty, never nothing
    assert sg[0, 1] == 1 and sg[-1, 1] == 1


def test_global_prompt_is_seen_by_every_frame_and_no_empty(backend):
    p = compile(Timeline(duration_s=1, fps=8, prompt="on black", cards=[TextCard(0, 0.5, "a ball")]), backend)
    g = p.segment_gates()
    assert [s.name for s in p.segments][0] == "global" and (g[:, 0] == 1).all()
    assert "empty" not in [s.name for s in p.segments]


def test_crossfade_is_half_at_the_boundary_and_none_at_the_ends():
    spec = LatentSpec(channels=3, temporal_factor=1, spatial_factor=4, causal_first=False)
    tl = Timeline(duration_s=2, fps=10, crossfade_s=0.4)
    grid = make_grid(tl, spec)
    g0 = span_gate(grid, 0, 1, 0.4)
    g1 = span_gate(grid, 1, 2, 0.4)
    t = grid.pixel_times()
    np.testing.assert_allclose(g0 + g1, 1.0)          # the two ramps sum to one
    assert g0[0] == 1 and g1[-1] == 1                  # no fade at the timeline's ends
    assert g0[np.argmin(abs(t - 0.95))] == pytest.approx(0.625)
    assert g0[np.argmin(abs(t - 1.25))] == pytest.approx(0.0)


def test_weight_curves_scale_text_gates():
    spec = LatentSpec(channels=3, temporal_factor=1, spatial_factor=4, causal_first=False)
    tl = Timeline(duration_s=1, fps=10, cards=[TextCard(0, 1, "a", weight=Curve(((0, 1), (1, 0)))),
                                               TextCard(0, 1, "b", weight=Curve(((0, 0), (1, 1))))])
    rows = text_layout(tl, make_grid(tl, spec))
    a, b = rows[0][3], rows[1][3]
    np.testing.assert_allclose(a + b, 1.0)
    assert a[0] > 0.9 and b[-1] > 0.9 and all(r[0] != "empty" for r in rows)


def test_padding_tokens_are_closed():
    class Padded(ReferenceBackend):
        def encode_text(self, prompts):
            out = []
            for tok, mask in super().encode_text(prompts):
                out.append((torch.nn.functional.pad(tok, (0, 0, 0, 3)), torch.nn.functional.pad(mask, (0, 3))))
            return out
    p = compile(Timeline(duration_s=1, fps=8, prompt="a red ball"), Padded())
    s = p.segments[0]
    assert (p.gate[:, s.end - 3:s.end] == 0).all() and (p.gate[:, s.start:s.end - 3] == 1).all()
    assert (p.uncond_gate[:, -3:] == 0).all()


# ----------------------------------------------------------------------------- media
def encode_frames(backend, frames):
    from engine.video_io import to_tensor
    return backend.encode_video(to_tensor(frames)[None])[0]


def test_image_at_zero_is_injected_exactly(backend, make_image):
    img = make_image(w=112, h=64)
    tl = Timeline(duration_s=1, fps=8, cards=[ImageCard(0, img)])
    p = compile(tl, backend)
    from engine.video_io import read_image
    z = encode_frames(backend, read_image(img)[None])
    assert p.start_level[0] == 0 and (p.start_level[1:] == 1).all()
    assert torch.equal(p.known[:, 0], z[:, 0])
    assert p.sources[0] == "cards[0]" and p.sources[1] == ""


def test_image_mid_clip_fills_its_latent_frame(backend, make_image):
    img = make_image(w=112, h=64)
    tl = Timeline(duration_s=2, fps=6, cards=[ImageCard(1.0, img, strength=0.7)])  # pixel 6 -> latent 3
    p = compile(tl, backend)
    lv = p.start_level.numpy()
    assert lv[3] == pytest.approx(0.3) and np.all(np.delete(lv, 3) == 1)


def test_video_card_levels_and_partial_coverage(backend, make_video):
    vid = make_video(n=24, fps=12, w=112, h=64)
    # pixels 0..12 (13 frames), card covers pixel start times in [0, 0.5) at 6 fps -> pixels 0,1,2
    tl = Timeline(duration_s=2, fps=6, cards=[VideoCard(0, 0.5, vid)])
    p = compile(tl, backend)
    lv = p.start_level.numpy()
    assert lv[0] == 0 and lv[1] == 0            # latent 0 = pixel 0, latent 1 = pixels 1-2
    assert (lv[2:] == 1).all()
    tl = Timeline(duration_s=2, fps=6, cards=[VideoCard(0, 2 / 6, vid, strength=0.8)])  # pixels 0,1
    lv = compile(tl, backend).start_level.numpy()
    assert lv[0] == pytest.approx(0.2) and lv[1] == pytest.approx(1 - 0.8 * 0.5)  # half of latent 1 covered


def test_overlap_keeps_more_and_ties_go_to_the_later_card(backend, make_video):
    a = make_video("a.mp4", seed=1, w=112, h=64)
    b = make_video("b.mp4", seed=2, w=112, h=64)
    tl = Timeline(duration_s=1, fps=6, cards=[VideoCard(0, 1, a, strength=0.5), VideoCard(0, 1, b, strength=0.9)])
    p = compile(tl, backend)
    assert all(s == "cards[1]" for s in p.sources) and torch.allclose(p.start_level, torch.tensor(0.1))
    tl.cards[1].strength = 0.5
    assert all(s == "cards[1]" for s in compile(tl, backend).sources)
    tl.cards = tl.cards[::-1]
    assert all(s == "cards[1]" for s in compile(tl, backend).sources)


def test_weighted_cards_mix_latents_and_noise_curve_applies(backend, make_video):
    a = make_video("a.mp4", seed=1, w=112, h=64)
    b = make_video("b.mp4", seed=2, w=112, h=64)
    mix = Curve(((0, 0), (1, 1)))
    inv = Curve(((0, 1), (1, 0)))
    tl = Timeline(duration_s=1, fps=6, cards=[VideoCard(0, 1, a, weight=inv), VideoCard(0, 1, b, weight=mix)],
                  noise=Curve.parse(0.4))
    p = compile(tl, backend)
    za = compile(Timeline(duration_s=1, fps=6, cards=[VideoCard(0, 1, a)]), backend).known
    zb = compile(Timeline(duration_s=1, fps=6, cards=[VideoCard(0, 1, b)]), backend).known
    m = torch.tensor(mix(p.grid.latent_times() / 1.0), dtype=torch.float32)
    expected = za * (1 - m)[None, :, None, None] + zb * m[None, :, None, None]
    torch.testing.assert_close(p.known, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(p.start_level, torch.tensor(0.4))


def test_strength_zero_card_is_ignored(backend, make_image):
    tl = Timeline(duration_s=1, fps=8, cards=[ImageCard(0, make_image(), strength=0.0)])
    p = compile(tl, backend)
    assert (p.start_level == 1).all() and (p.known == 0).all()


def test_explain_lists_every_latent_frame(backend, make_image):
    tl = Timeline(duration_s=1, fps=8, cards=[ImageCard(0, make_image()), TextCard(0, 1, "a red ball")])
    text = compile(tl, backend).explain()
    assert "cards[1]" in text and len(text.splitlines()) == 3 + 5


# ----------------------------------------------------------------------------- review regressions
def test_blend_noise_curve_uses_the_timelines_own_span(make_video):
    """tf = 8: 26 frames snap to 33; the noise curve must follow the same time axis as the mix."""
    from engine import ops
    be = ReferenceBackend(temporal_factor=8)
    a = make_video("a.mp4", n=26, fps=12, w=112, h=64, seed=1)
    b = make_video("b.mp4", n=26, fps=12, w=112, h=64, seed=2)
    tl = ops.blend(a, b, "0:0,1:1")
    p = compile(tl, be)
    mix = tl.cards[1].weight(np.clip(p.grid.latent_times() / tl.duration_s, 0, 1))
    np.testing.assert_allclose(p.start_level.numpy(), 0.9 * 4 * mix * (1 - mix), atol=0.02)


def test_snap_padding_never_reads_past_the_cards_source(make_video):
    from engine.plan import _card_pixels
    clip = make_video("v.mp4", n=48, fps=12, w=112, h=64)               # 4 s; frames from 3 s on are a later shot
    tl = Timeline(duration_s=2, fps=12, cards=[VideoCard(0, 2, clip, source_in_s=1.0)])
    grid = make_grid(tl, ReferenceBackend().spec)
    assert grid.n_frames == 25 and grid.out_frames == 24
    px = _card_pixels(tl, grid, tl.cards[0], {})
    assert np.array_equal(px[24], px[23])                              # the padding holds source frame 35


def test_a_lone_weighted_card_fades_with_its_weight(backend, make_video):
    clip = make_video("v.mp4", n=24, fps=12, w=112, h=64)
    tl = Timeline(duration_s=1, fps=6, cards=[VideoCard(0, 1, clip, weight=Curve.parse(0.3))])
    np.testing.assert_allclose(compile(tl, backend).start_level.numpy(), 0.7, atol=1e-6)


def test_a_mixed_group_ties_by_its_latest_card(backend, make_video):
    a = make_video("a.mp4", seed=1, w=112, h=64)
    b = make_video("b.mp4", seed=2, w=112, h=64)
    mixed = [VideoCard(0, 1, a, weight=Curve.parse(0.5)), VideoCard(0, 1, b, weight=Curve.parse(0.5))]
    plain = VideoCard(0, 1, a, strength=1.0)
    assert compile(Timeline(duration_s=1, fps=6, cards=[plain, *mixed]), backend).sources[0].startswith("cards[1]")
    assert compile(Timeline(duration_s=1, fps=6, cards=[*mixed, plain]), backend).sources[0] == "cards[2]"


@pytest.mark.parametrize("aspect", [(4, 1), (1, 4), (16, 9)])
def test_no_side_exceeds_the_backends_limit(aspect):
    spec = LatentSpec(channels=4, temporal_factor=8, spatial_factor=32, max_side=1024)
    w, h = spec.frame_size(aspect, 2160)
    assert max(w, h) <= 1024 and w % 32 == 0 and h % 32 == 0


@pytest.mark.parametrize("tf,causal", [(2, True), (4, False), (8, True)])
def test_outline_has_the_compiled_plans_rows_and_geometry(tf, causal, make_video, make_image):
    """The page's plan table comes from outline() on the spec alone; it must be the plan compile() makes."""
    from engine.plan import outline
    be = ReferenceBackend(temporal_factor=tf, causal_first=causal)
    a = make_video("a.mp4", seed=1, w=112, h=64)
    b = make_video("b.mp4", seed=2, w=112, h=64)
    tl = Timeline(duration_s=2.5, fps=8, prompt="on grass", negative_prompt="blurry", crossfade_s=0.25,
                  cards=[ImageCard(0, make_image()), ImageCard(1.3, make_image("b.png", color=(20, 200, 40)), 0.6),
                         VideoCard(0.5, 1.5, a, weight=Curve(((0, 1), (1, 0)))),
                         VideoCard(0.5, 1.5, b, weight=Curve(((0, 0), (1, 1)))),
                         TextCard(0, 1.2, "a red ball bouncing"),
                         TextCard(1.0, 2.5, "a blue cube", weight=Curve(((0, 1), (1, 0.3))))],
                  noise=Curve(((0, 1), (1, 0.6))))
    real, out = compile(tl, be), outline(tl, be.spec)
    assert out.rows() == real.rows() and out.explain().splitlines()[2:] == real.explain().splitlines()[2:]
    assert torch.equal(out.start_level, real.start_level) and out.known.shape == real.known.shape
    assert np.array_equal(out.segment_gates(), real.segment_gates()) and out.sources == real.sources


def test_a_plans_head_is_its_first_latent_frames_and_nothing_else_changes(backend):
    """Plan.head(k), the keyframe pass's plan: the first k latent frames, their pixel frames, gates and sources."""
    tl = Timeline(duration_s=2, fps=6, cards=[TextCard(0, 7 / 6, "red ball"), TextCard(7 / 6, 2, "blue box")])
    p = compile(tl, backend)
    for k in (1, 3, p.grid.latent_frames):
        h = p.head(k)
        assert (h.grid.latent_frames, h.grid.n_frames) == (k, backend.spec.pixel_range(k - 1)[1])
        assert h.grid.out_frames <= h.grid.n_frames and (h.grid.width, h.grid.fps) == (p.grid.width, p.grid.fps)
        assert torch.equal(h.known, p.known[:, :k]) and torch.equal(h.gate, p.gate[:k])
        assert torch.equal(h.start_level, p.start_level[:k]) and h.sources == p.sources[:k]
        assert torch.equal(h.text, p.text) and h.segments == p.segments and len(h.rows()) == k
    assert p.head(1).explain().count("\n") == p.explain().count("\n") - (p.grid.latent_frames - 1)
    for j in (2, p.grid.latent_frames - 1):   # a window: frame j as a clip's first (a keyframe at a cut)
        w = p.window(j, 1)
        assert (w.grid.latent_frames, w.grid.n_frames, w.grid.out_frames) == (1, 1, 1)
        assert torch.equal(w.gate, p.gate[j:j + 1]) and torch.equal(w.known, p.known[:, j:j + 1])
        assert torch.equal(w.start_level, p.start_level[j:j + 1]) and w.sources == p.sources[j:j + 1]
    assert not torch.equal(p.window(5, 1).gate, p.head(1).gate)                 # frame 5 sees the blue box alone
