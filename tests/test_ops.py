"""Operations build the timelines DESIGN.md §4 describes (read off the compiled plan)."""
import numpy as np
import pytest
import torch

from engine import ops
from engine.api import Settings, generate
from engine.plan import compile

FPS = 12


@pytest.fixture
def clip(make_video):
    return make_video("clip.mp4", n=24, fps=FPS, w=112, h=64)  # 2 s, 16:9


def test_t2v_is_one_text_card_over_the_span(backend):
    tl = ops.t2v("a red ball moving left", duration_s=2)
    p = compile(tl, backend)
    assert [s.name for s in p.segments] == ["cards[0]"] and (p.segment_gates() == 1).all()
    assert (p.start_level == 1).all()


def test_empty_prompt_is_unconditioned(backend):
    p = compile(ops.t2v("", duration_s=1), backend)
    assert [s.name for s in p.segments] == ["empty"]


def test_i2v_injects_the_first_frame_and_follows_the_image_shape(backend, make_image):
    img = make_image(w=64, h=112)
    tl = ops.i2v(img, "a ball", duration_s=1)
    assert tl.aspect == "9:16"
    p = compile(tl, backend)
    assert p.start_level[0] == 0 and (p.start_level[1:] == 1).all()


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.8, 1.0])
def test_remix_keeps_one_minus_amount_everywhere(backend, clip, amount):
    tl = ops.remix(clip, "a blue box", amount)
    assert (tl.duration_s, tl.fps, tl.aspect) == (2.0, FPS, "7:4")  # the source's own shape, 112x64
    p = compile(tl, backend)
    np.testing.assert_allclose(p.start_level.numpy(), amount, atol=1e-6)
    assert [s.name for s in p.segments] == ["cards[1]"]


def test_blend_curve_drives_levels_latents_and_gates(backend, make_video):
    a = make_video("a.mp4", seed=1, w=112, h=64)
    b = make_video("b.mp4", seed=2, w=112, h=64)
    tl = ops.blend(a, b, "0:0,0.4:0,0.6:1,1:1", "a red ball", "a blue box")
    p = compile(tl, backend)
    lv = p.start_level.numpy()
    assert lv[0] == 0 and lv[-1] == 0 and lv.max() > 0.8              # pure ends kept, the middle repainted
    assert p.sources[0].startswith("cards[0] 100%") and p.sources[-1].endswith("cards[1] 100%")
    sg = p.segment_gates()                                            # text: 1 - mix and mix
    names = [s.name for s in p.segments]
    ia, ib = names.index("cards[2]"), names.index("cards[3]")
    assert sg[0, ia] == 1 and sg[0, ib] == 0 and sg[-1, ia] == 0 and sg[-1, ib] == 1
    np.testing.assert_allclose(sg[:, ia] + sg[:, ib], 1.0, atol=1e-6)


def test_loop_plan_and_output(backend, clip):
    tl = ops.loop(clip, bridge_s=1.0, context_s=0.5, seed=0)  # both generations below share noise
    assert tl.duration_s == pytest.approx(2.0)        # 0.5 context + 1 bridge + 0.5 context
    p = compile(tl, backend)
    g = p.grid
    times = g.latent_times()
    lv = p.start_level.numpy()
    assert (lv[times < 0.45] == 0).all() and (lv[times > 1.55] == 0).all()
    assert (lv[(times > 0.6) & (times < 1.4)] == 1).all()
    from engine.video_io import fit, read_video, to_tensor
    src = fit(read_video(clip), 112, 64)
    # the plan's ends are the clip's tail (first latent frame = source frame at T - c) and head
    z_tail = backend.encode_video(to_tensor(src[18:19])[None])[0][:, 0]
    assert torch.equal(p.known[:, 0], z_tail) and p.sources[0] == "cards[0]" and p.sources[-1] == "cards[1]"
    out, gen = generate(tl, backend, Settings(steps=2))[0], generate(tl.replace(assemble=None), backend, Settings(steps=2))[0]
    assert len(out) == 24 + 12                                        # clip + bridge
    assert np.array_equal(out[:6], gen[18:24])                        # head': the decoded head (0.5 s)
    assert np.array_equal(out[6:18], src[6:18])                       # the clip's middle, verbatim
    assert np.array_equal(out[18:], gen[:18])                         # tail' + bridge: the loop point is inside


def test_a_loop_of_a_section_injects_that_section_s_frames_only(backend, clip):
    """section=(0.5, 1.75) of the 2 s clip: frames 6..20 loop; nothing before 6 or from 21 on is used."""
    tl = ops.loop(clip, bridge_s=1.0, context_s=0.5, seed=0, section=(0.5, 1.75))
    assert tl.duration_s == pytest.approx(2.0)                       # 0.5 context + 1 bridge + 0.5 context
    cards = [c for c in tl.cards if c.kind == "video"]
    assert [(c.source_in_s, c.source_out_s) for c in cards] == [(1.25, 1.75), (0.5, 1.0)]    # the section's tail, then its head
    p = compile(tl, backend)
    from engine.video_io import fit, read_video, to_tensor
    src = fit(read_video(clip), 112, 64)
    z_tail = backend.encode_video(to_tensor(src[15:16])[None])[0][:, 0]        # out - context = frame 15
    assert torch.equal(p.known[:, 0], z_tail) and p.sources[0] == "cards[0]" and p.sources[-1] == "cards[1]"
    whole = compile(ops.loop(clip, bridge_s=1.0, context_s=0.5, seed=0), backend)
    assert not torch.equal(p.known, whole.known)                    # not the whole clip's ends
    out, gen = generate(tl, backend, Settings(steps=2))[0], generate(tl.replace(assemble=None), backend, Settings(steps=2))[0]
    assert len(out) == 15 + 12                                        # the section + bridge
    assert np.array_equal(out[:6], gen[18:24])                        # head': the decoded head of the section
    assert np.array_equal(out[6:9], src[12:15])                       # the section's middle, verbatim
    assert np.array_equal(out[9:], gen[:18])                          # tail' + bridge


@pytest.mark.parametrize("section,said", [
    ((1.0, 0.5), "1:0.5 is not inside the clip (0:2)"), ((0.0, 3.0), "0:3 is not inside the clip"),
    ((-1, 1), "-1:1 is not inside"), ((0.5, 0.55), "under two frames"), ((0.5, float("nan")), "not inside"),
    ("12", "expected [in_s, out_s]"), ((1.0,), "expected [in_s, out_s]"), ((0, "x"), "expected [in_s, out_s]"),
])
def test_a_bad_loop_section_is_refused_in_one_line_naming_it(clip, section, said):
    from engine.params import InputError
    with pytest.raises(InputError) as e:
        ops.loop(clip, section=section)
    assert str(e.value).startswith("section: ") and said in str(e.value) and "\n" not in str(e.value)


def test_a_loop_request_takes_a_section(clip):
    from engine.requests import build
    tl, _, lineage = build("loop", {"video": clip, "section": [0.5, 1.75], "context_s": 0.5})
    assert [(c.source_in_s, c.source_out_s) for c in tl.cards if c.kind == "video"] == [(1.25, 1.75), (0.5, 1.0)]


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_extend_injects_the_near_end_and_appends(backend, clip, direction):
    tl = ops.extend(clip, 1.0, direction, "a ball", context_s=0.5)
    p = compile(tl, backend)
    lv, times = p.start_level.numpy(), p.grid.latent_times()
    if direction == "forward":    # clip's last 0.5 s, then 1 s generated
        kept, new = times < 0.45, times > 0.55
    else:                         # 1 s generated, then the clip's first 0.5 s
        kept, new = times > 1.05, times < 0.95
    assert (lv[kept] == 0).all() and (lv[new] == 1).all()
    out = generate(tl, backend, Settings(steps=2))[0]
    assert len(out) == 24 + 12
    from engine.video_io import read_video
    src = read_video(clip)
    assert np.array_equal(out[:24] if direction == "forward" else out[12:], src)


def test_interpolate_pins_each_image(backend, make_image):
    a, b = make_image("a.png", w=112, h=64), make_image("b.png", w=112, h=64, color=(0, 0, 200))
    tl = ops.interpolate([(a, 0.0), (b, 1.0)], "a ball")
    p = compile(tl, backend)
    lv = p.start_level.numpy()
    assert lv[0] == 0 and lv[backend.spec.latent_index(11)] == 0 and (lv == 0).sum() == 2


def test_recut_trims_and_resamples_without_the_model(clip):
    from engine.video_io import read_video
    tl = ops.recut(clip, trim=(0.5, 1.5), fps=6)
    out = generate(tl, backend=None)[0]
    src = read_video(clip)
    assert len(out) == 6 and np.array_equal(out, src[6:18:2])


def test_upscale_is_a_low_amount_remix_at_a_higher_resolution(backend, clip):
    tl = ops.upscale(clip, 128, amount=0.2)
    p = compile(tl, backend)
    assert (p.grid.width, p.grid.height) == (224, 128)
    np.testing.assert_allclose(p.start_level.numpy(), 0.2, atol=1e-6)


@pytest.mark.parametrize("name", ["text", "story", "i2v", "loop", "blend", "remix"])
def test_examples_load_and_compile(backend, name):
    from pathlib import Path

    from engine.timeline import load
    tl = load(Path(__file__).parent.parent / "examples" / f"{name}.json")
    p = compile(tl, backend)
    assert p.grid.out_frames == tl.n_frames and (p.gate.amax(1) > 0).all()
    if name in ("i2v", "loop", "blend", "remix"):
        assert (p.start_level < 1).any()


@pytest.mark.parametrize("op, extra, field", [
    ("remix", {"prompt": "a ball"}, "amount"), ("loop", {}, "bridge_s"), ("loop", {}, "context_s"),
    ("extend", {}, "extend_s"), ("extend", {}, "direction"), ("extend", {}, "context_s"),
    ("generate", {"prompt": "a ball"}, "duration_s"),
])
def test_a_field_a_request_leaves_out_takes_the_one_declared_default(clip, op, extra, field):
    """engine.params declares each default once; a request without the field builds what one giving that
    default builds (requests.py used to retype them)."""
    from engine.params import PARAMS
    from engine.requests import build
    req = {"video": clip, "seed": 3, **extra} if op != "generate" else {"seed": 3, **extra}
    without, _, _ = build(op, req)
    given, _, _ = build(op, {**req, field: PARAMS[field].default})
    assert without.to_dict() == given.to_dict()
    other = PARAMS[field].choices[-1] if PARAMS[field].choices else PARAMS[field].default / 2
    assert build(op, {**req, field: other})[0].to_dict() != without.to_dict()    # the field does reach the timeline


def test_the_operations_table_is_what_the_studio_reads():
    """One table: the library files videos under its names, jobs and the page label them with its words, and
    each request is held to its fields."""
    from engine.params import InputError
    from engine.requests import OPS, build
    from studio.jobs import _label
    from studio.library import KINDS
    from studio.pages.results import KIND_TAB, label_of
    assert KINDS == tuple(OPS) and set(KIND_TAB) == set(OPS)
    tl = ops.t2v("a ball")                     # a storyboard's label is its text cards'
    for name, op in OPS.items():
        label = _label(name, {"prompt": "a ball"}, tl)
        assert label == (f"{op.word}: a ball" if op.word else "a ball") and label_of(name, label) == label
        with pytest.raises(InputError, match=f"unknown field 'zzz' for {name}"):
            build(name, {"zzz": 1})
