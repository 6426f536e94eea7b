"""Sampler: a perfect denoiser returns its target; injected frames are exact; levels are honoured."""
import threading

import pytest
import torch

from engine.plan import compile
from engine.sampler import Cancelled, sample, sample_keyframe_first, schedule, shift_for_tokens
from engine.timeline import ImageCard, TextCard, Timeline


def fake_plan(F=5, C=2, h=3, w=4, levels=None, L=3, D=8):
    """A Plan-like object with random known latents."""
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(1)
    levels = torch.tensor(levels if levels is not None else [1.0] * F)
    p = SimpleNamespace(known=torch.randn(C, F, h, w, generator=g), start_level=levels,
                        text=torch.randn(L, D, generator=g), gate=torch.ones(F, L),
                        uncond_text=torch.randn(2, D, generator=g), uncond_gate=torch.ones(F, 2))
    p.window = lambda j, k: SimpleNamespace(**{**vars(p), "known": p.known[:, j:j + k],   # Plan.window
                                                "start_level": p.start_level[j:j + k], "gate": p.gate[j:j + k],
                                                "uncond_gate": p.uncond_gate[j:j + k]})
    p.head = lambda k: p.window(0, k)
    return p


def perfect(target):
    """The exact velocity towards `target`: v = (x - x0) / t per frame."""
    def den(x, t, text, gate):
        tt = t[:, None, :, None, None].clamp_min(1e-12)
        return (x - target) / tt
    return den


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_perfect_denoiser_returns_its_target(solver, per_token, shift):
    p = fake_plan()
    target = torch.randn(1, *p.known.shape, generator=torch.Generator().manual_seed(5))
    x = sample(perfect(target), p, schedule(6, shift), guidance=1.0, noise=torch.randn_like(target),
               per_token=per_token, solver=solver)
    torch.testing.assert_close(x, target, atol=1e-5, rtol=1e-5)


def test_perfect_denoiser_with_cfg_returns_its_target():
    p = fake_plan()
    target = torch.randn(2, *p.known.shape)
    den = perfect(torch.cat([target, target]))
    x = sample(den, p, schedule(8), guidance=5.0, noise=torch.randn_like(target))
    torch.testing.assert_close(x, target, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("per_token", [True, False])
def test_injected_frames_are_exact_and_levels_honoured(per_token, solver):
    levels = [0.0, 1.0, 0.5, 0.0, 0.25]
    p = fake_plan(levels=levels)
    rand = torch.Generator().manual_seed(3)
    den = lambda x, t, text, gate: torch.randn(x.shape, generator=rand) * 3  # noqa: E731  (anything at all)
    eps = torch.randn(1, *p.known.shape)
    seen = []
    sigmas = schedule(10)
    x = sample(den, p, sigmas, guidance=2.0, noise=eps, per_token=per_token, solver=solver,
               callback=lambda d: seen.append(d))
    for f in (0, 3):
        assert torch.equal(x[0, :, f], p.known[:, f])  # bit-exact frame injection
    assert len(seen) == 10 and set(seen[0]) == {"step", "steps", "t", "x", "denoised"}
    for d in seen:  # while t > s the frame is not touched by the model
        for f, s in enumerate(levels):
            if d["t"] > s and s > 0:
                lvl = s if per_token else d["t"]
                expected = (1 - lvl) * p.known[:, f] + lvl * eps[0, :, f]
                torch.testing.assert_close(d["x"][0, :, f], expected, atol=1e-6, rtol=1e-6)


def test_per_token_mode_tells_the_model_each_frames_level():
    p = fake_plan(F=3, levels=[0.0, 1.0, 0.3])
    calls = []

    def den(x, t, text, gate):
        calls.append(t.clone())
        return torch.zeros_like(x)
    sample(den, p, schedule(4), noise=torch.zeros(1, *p.known.shape))
    for t, tt in zip(schedule(4)[:-1], calls):
        torch.testing.assert_close(tt[0], torch.tensor([0.0, float(t), min(float(t), 0.3)]))


def test_cfg_combines_one_batched_call():
    p = fake_plan()
    calls = []

    def den(x, t, text, gate):
        calls.append(x.shape[0])
        # cond rows see 3 open tokens, uncond rows 2: return the count as the velocity
        return gate.sum(-1)[:, None, :, None, None].expand_as(x).clone()
    x = sample(den, p, torch.tensor([1.0, 0.0]), guidance=4.0, noise=torch.zeros(1, *p.known.shape))
    assert calls == [2]
    # v = 2 + 4 (3 - 2) = 6, x = 0 + (0 - 1) * 6
    torch.testing.assert_close(x, torch.full_like(x, -6.0))


def test_cfg_unbatched_makes_two_calls_of_the_sample_batch_with_the_same_result():
    p, calls = fake_plan(), []

    def den(x, t, text, gate):
        calls.append((x.shape[0], text.shape[0], gate.shape[0]))
        return gate.sum(-1)[:, None, :, None, None].expand_as(x).clone()
    noise = torch.zeros(2, *p.known.shape)
    x = sample(den, p, torch.tensor([1.0, 0.0]), guidance=4.0, noise=noise, cfg_batch=False)
    assert calls == [(2, 2, 2), (2, 2, 2)]                      # cond rows, then uncond rows
    torch.testing.assert_close(x, torch.full_like(x, -6.0))
    target = torch.randn(1, *p.known.shape)                     # (broadcasts over whatever batch it is called with)
    for batched in (True, False):                                # a perfect denoiser still lands on its target
        out = sample(perfect(target), p, schedule(6), guidance=3.0, noise=torch.randn(2, *p.known.shape),
                     cfg_batch=batched)
        torch.testing.assert_close(out, target.expand_as(out), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("batched", [True, False])
def test_guidance_floor_runs_the_conditional_branch_alone_below_it(solver, batched):
    """A step from a level below the floor calls the denoiser on the cond rows alone (Heun's second call too);
    above it, both branches; a floor above every level is exactly guidance 1, and a perfect denoiser still
    lands on its target."""
    from collections import Counter
    p, rows = fake_plan(), Counter()

    def den(x, t, text, gate):
        rows[round(float(t.max()), 3)] += text.shape[0]
        return (x + text.mean((1, 2))[:, None, None, None, None]) * t[:, None, :, None, None]
    noise = torch.randn(2, *p.known.shape, generator=torch.Generator().manual_seed(3))
    sig = schedule(4)                                                   # 1, 0.75, 0.5, 0.25, 0
    floored = sample(den, p, sig, guidance=4.0, noise=noise, solver=solver, cfg_batch=batched, guidance_floor=0.6)
    called = dict(rows)
    # text rows per level, 2 samples: guided steps 4 (cond + uncond), unguided 2; Heun also calls at t_next
    want = {1.0: 4, 0.75: 4, 0.5: 2, 0.25: 2} if solver == "euler" else {1.0: 4, 0.75: 8, 0.5: 6, 0.25: 4}
    assert called == want
    unguided = sample(den, p, sig, guidance=4.0, noise=noise, solver=solver, cfg_batch=batched, guidance_floor=1.01)
    assert torch.equal(unguided, sample(den, p, sig, guidance=1.0, noise=noise, solver=solver, cfg_batch=batched))
    assert not torch.allclose(floored, sample(den, p, sig, guidance=4.0, noise=noise, solver=solver, cfg_batch=batched))
    target = torch.randn(1, *p.known.shape)
    out = sample(perfect(target), p, schedule(6), guidance=3.0, noise=noise, guidance_floor=0.5, solver=solver)
    torch.testing.assert_close(out, target.expand_as(out), atol=1e-5, rtol=1e-5)


def test_unconditional_branch_is_gated_open_to_the_empty_prompt(backend):
    tl = Timeline(duration_s=1, fps=8, cards=[TextCard(0, 0.5, "a red ball"), TextCard(0.5, 1, "a blue box")])
    p = compile(tl, backend)
    gates = []
    sample(lambda x, t, text, gate: gates.append(gate) or torch.zeros_like(x), p, schedule(1), guidance=3.0,
           noise=torch.zeros(1, *p.known.shape))
    g = gates[0]
    L0 = p.uncond_text.shape[0]
    assert (g[1, :, :L0] == 1).all() and (g[1, :, L0:] == 0).all()   # uncond: every frame, its own tokens
    torch.testing.assert_close(g[0, :, :p.text.shape[0]], p.gate)    # cond: the plan's gate


def test_cancel_token_stops_between_steps():
    p = fake_plan()
    ev = threading.Event()
    n = []

    def cb(d):
        n.append(d["step"])
        if d["step"] == 2:
            ev.set()
    with pytest.raises(Cancelled):
        sample(lambda x, t, tx, g: torch.zeros_like(x), p, schedule(10), callback=cb, cancel=ev)
    assert n == [1, 2]


def test_same_noise_same_result_and_generator_determinism(backend, make_image):
    tl = Timeline(duration_s=1, fps=8, cards=[ImageCard(0, make_image(w=112, h=64)), TextCard(0, 1, "a ball")])
    p = compile(tl, backend)
    run = lambda: sample(backend.denoise, p, schedule(3), guidance=2.0,  # noqa: E731
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(run(), run())


def test_schedule_shape_and_shift():
    s = schedule(10, 3.0)
    assert s.shape == (11,) and s[0] == 1 and s[-1] == 0 and (s[1:] < s[:-1]).all()
    assert (schedule(10, 3.0)[1:-1] > schedule(10, 1.0)[1:-1]).all()
    assert shift_for_tokens(100) == 1.0 and shift_for_tokens(10**6) == 3.0


def smooth(x, t, text, gate):
    """A deterministic denoiser that mixes frames (like attention) and reads t and the text."""
    return torch.sin(x) + x.mean(2, keepdim=True) + t[:, None, :, None, None] + text.mean() * gate.mean()


@pytest.mark.parametrize("per_token", [True, False])
def test_keyframe_first_freezes_the_first_pass_keyframe_per_variation(per_token):
    p = fake_plan()
    eps = torch.randn(2, *p.known.shape, generator=torch.Generator().manual_seed(7))
    seen = []
    den = lambda x, t, tx, g: seen.append(t.clone()) or smooth(x, t, tx, g)  # noqa: E731
    first = sample(smooth, p, schedule(5), guidance=2.0, noise=eps, per_token=per_token)
    out = sample_keyframe_first(den, p, schedule(5), guidance=2.0, noise=eps, per_token=per_token)
    assert torch.equal(out[:, :, 0], first[:, :, 0])                 # each variation keeps its own keyframe
    assert not torch.equal(first[0, :, 0], first[1, :, 0])
    assert not torch.equal(out[:, :, 1:], first[:, :, 1:])           # the rest was sampled again
    second = seen[len(seen) // 2:]
    if per_token:                                                    # pass two sees the keyframe clean
        assert all((t[:, 0] == 0).all() and (t[:, 1:] > 0).all() for t in second[:-1])


def test_keyframe_first_with_a_perfect_denoiser_returns_its_target():
    p = fake_plan()
    target = torch.randn(2, *p.known.shape, generator=torch.Generator().manual_seed(5))
    out = sample_keyframe_first(perfect(target), p, schedule(6), noise=torch.randn_like(target))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)


def test_keyframe_first_is_one_pass_where_the_plan_already_has_a_first_frame():
    p = fake_plan(levels=[0.0, 1.0, 1.0, 1.0, 1.0])
    eps = torch.randn(1, *p.known.shape)
    calls = []
    den = lambda x, t, tx, g: calls.append(1) or smooth(x, t, tx, g)  # noqa: E731
    out = sample_keyframe_first(den, p, schedule(4), noise=eps)
    assert torch.equal(out, sample(smooth, p, schedule(4), noise=eps)) and len(calls) == 4


def test_keyframe_first_counts_both_passes_as_one_run():
    p = fake_plan()
    seen = []
    sample_keyframe_first(smooth, p, schedule(3), noise=torch.zeros(1, *p.known.shape),
                          callback=lambda d: seen.append((d["step"], d["steps"])))
    assert seen == [(k, 6) for k in range(1, 7)]


def test_keyframe_first_draws_the_keyframe_with_one_model_and_the_rest_with_the_image_to_video_one():
    """Two perfect denoisers with different targets: the keyframe is the text-to-video model's, every other
    frame the image-to-video model's; a given first frame goes to i2v alone, a remixed one (partly noised)
    to the text-to-video model alone."""
    p = fake_plan()
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(2, *p.known.shape, generator=g), torch.randn(2, *p.known.shape, generator=g)
    out = sample_keyframe_first(perfect(a), p, schedule(6), noise=torch.randn_like(a), i2v=perfect(b))
    torch.testing.assert_close(out[:, :, 0], a[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 1:], b[:, :, 1:], atol=1e-5, rtol=1e-5)
    # a remix at 0.3 waits out the two steps above it (sample skips steps that move no frame)
    for levels, used, n in (([0.0] + [1.0] * 4, "i2v", 4), ([0.6] + [1.0] * 4, "t2v", 4), ([0.3] * 5, "t2v", 2)):
        calls = []
        t2v = lambda x, t, tx, gt: calls.append("t2v") or smooth(x, t, tx, gt)  # noqa: E731
        i2v = lambda x, t, tx, gt: calls.append("i2v") or smooth(x, t, tx, gt)  # noqa: E731
        sample_keyframe_first(t2v, fake_plan(levels=levels), schedule(4), noise=torch.randn(1, *p.known.shape),
                              i2v=i2v)
        assert calls == [used] * n


def test_a_keyframe_pass_over_the_first_latent_frame_draws_it_alone_from_the_same_noise(backend):
    """keyframe_frames=1: the keyframe model sees one latent frame; for a model that treats frames apart, the
    keyframe is the whole-clip pass's first frame, and the rest is still the image-to-video model's."""
    tl = Timeline(duration_s=2, fps=8, cards=[TextCard(0, 2, "a red ball moving left")])
    p = compile(tl, backend)
    frame_local = lambda x, t, tx, g: torch.sin(x) + t[:, None, :, None, None]  # noqa: E731
    seen = []
    t2v = lambda x, t, tx, g: seen.append(x.shape[2]) or frame_local(x, t, tx, g)  # noqa: E731
    eps = torch.randn(2, *p.known.shape, generator=torch.Generator().manual_seed(3))
    whole = sample_keyframe_first(frame_local, p, schedule(4), guidance=2.0, noise=eps, i2v=smooth)
    head = sample_keyframe_first(t2v, p, schedule(4), guidance=2.0, noise=eps, i2v=smooth, keyframe_frames=1)
    assert set(seen) == {1} and p.known.shape[1] > 1
    torch.testing.assert_close(head[:, :, 0], whole[:, :, 0])
    torch.testing.assert_close(head, whole)                                  # the second pass is the same too
    target = torch.randn(2, *p.known.shape, generator=torch.Generator().manual_seed(4))
    a = torch.randn_like(target)
    out = sample_keyframe_first(perfect(a[:, :, :1]), p, schedule(6), noise=torch.randn_like(target),
                                i2v=perfect(target), keyframe_frames=1)
    torch.testing.assert_close(out[:, :, 0], a[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 1:], target[:, :, 1:], atol=1e-5, rtol=1e-5)


def test_a_keyframe_model_draws_the_keyframe_alone_and_nothing_else():
    """keyframe=: a third denoiser draws the keyframe pass; the clip is the image-to-video model's, and a
    remixed (partly noised) or given first frame never reaches the keyframe model."""
    p = fake_plan()
    g = torch.Generator().manual_seed(11)
    a, b, c = (torch.randn(2, *p.known.shape, generator=g) for _ in range(3))
    out = sample_keyframe_first(perfect(a), p, schedule(6), noise=torch.randn_like(a), i2v=perfect(b),
                                keyframe=perfect(c))
    torch.testing.assert_close(out[:, :, 0], c[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 1:], b[:, :, 1:], atol=1e-5, rtol=1e-5)
    for levels, used, k in (([0.0] + [1.0] * 4, "i2v", 4), ([0.3] * 5, "t2v", 2), ([1.0] * 5, "key", 4)):
        calls = []
        den = {n: (lambda n: lambda x, t, tx, gt: calls.append(n) or smooth(x, t, tx, gt))(n) for n in ("t2v", "i2v", "key")}
        sample_keyframe_first(den["t2v"], fake_plan(levels=levels), schedule(4), noise=torch.randn(1, *p.known.shape),
                              i2v=den["i2v"], keyframe=den["key"])
        assert calls[:k] == [used] * k and "t2v" not in calls[k:] and "key" not in calls[k:]


def test_keyframe_first_applies_its_continue_floor_to_the_second_pass_alone():
    """continue_floor: the keyframe pass and a plan whose first frame is given are guided at every step; the
    second pass runs its low steps on the conditional rows alone."""
    p, calls = fake_plan(), []

    def den(name):
        def f(x, t, text, gate):
            calls.append((name, round(float(t.max()), 3), text.shape[0]))
            return torch.zeros_like(x)
        return f
    noise = torch.randn(1, *p.known.shape)
    sample_keyframe_first(den("dit"), p, schedule(4), 4.0, noise=noise, i2v=den("i2v"), continue_floor=0.6)
    assert calls == [("dit", t, 2) for t in (1.0, 0.75, 0.5, 0.25)] + \
        [("i2v", 1.0, 2), ("i2v", 0.75, 2), ("i2v", 0.5, 1), ("i2v", 0.25, 1)]
    calls.clear()
    given = fake_plan(levels=[0.0, 1.0, 1.0, 1.0, 1.0])
    sample_keyframe_first(den("dit"), given, schedule(4), 4.0, noise=noise, i2v=den("i2v"), continue_floor=0.6)
    assert calls == [("i2v", t, 2) for t in (1.0, 0.75, 0.5, 0.25)]


def test_a_remix_from_redraw_from_up_is_drawn_keyframe_first_from_its_source():
    """redraw_from: a plan whose first frame starts at that level or above (a remix that redraws the layout)
    gets its keyframe from the keyframe model, starting from the source's first frame at its level, and the
    rest from the image-to-video model, starting from the source's other frames; below it the denoiser draws
    the remix alone, as without redraw_from."""
    g = torch.Generator().manual_seed(12)
    p = fake_plan(levels=[0.6] * 5)
    a, b, c = (torch.randn(1, *p.known.shape, generator=g) for _ in range(3))
    noise = torch.randn(1, *p.known.shape, generator=g)
    out = sample_keyframe_first(perfect(a), p, schedule(6), noise=noise, i2v=perfect(b), keyframe=perfect(c),
                                keyframe_frames=1, redraw_from=0.5)
    torch.testing.assert_close(out[:, :, 0], c[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 1:], b[:, :, 1:], atol=1e-5, rtol=1e-5)
    seen = []
    den = {n: (lambda n: lambda x, t, tx, gt: seen.append((n, x.clone(), t.clone())) or smooth(x, t, tx, gt))(n)
           for n in ("t2v", "i2v", "key")}
    sample_keyframe_first(den["t2v"], p, schedule(4), 2.0, noise=noise, i2v=den["i2v"], keyframe=den["key"],
                          keyframe_frames=1, redraw_from=0.5)
    assert [n for n, _, _ in seen] == ["key"] * 3 + ["i2v"] * 3              # from the step that reaches 0.6
    start = 0.4 * p.known + 0.6 * noise[0]                                   # the source at level 0.6
    torch.testing.assert_close(seen[0][1][0], start[:, :1])                   # the keyframe pass starts from it
    torch.testing.assert_close(seen[3][1][0, :, 1:], start[:, 1:])            # and so do the other frames
    assert (seen[3][2][:, 0] == 0).all() and (seen[3][2][:, 1:] == 0.6).all()
    for levels, kw in (([0.3] * 5, {"redraw_from": 0.5}), ([0.6] * 5, {})):
        seen.clear()
        sample_keyframe_first(den["t2v"], fake_plan(levels=levels), schedule(4), 2.0, noise=noise, i2v=den["i2v"],
                              keyframe=den["key"], keyframe_frames=1, **kw)
        assert [n for n, _, _ in seen] == ["t2v"] * (2 if levels[0] < 0.5 else 3)


def test_a_cut_is_drawn_as_a_keyframe_of_its_own_from_its_frames_noise_and_kept_through_the_second_pass():
    """cuts={j: (plan, denoiser)}: frame j is drawn alone (that one-frame plan, from noise[:, :, j]) by its own
    denoiser, then frozen beside the keyframe while the image-to-video model draws every other frame, seeing both
    clean."""
    p = fake_plan(F=6)
    g = torch.Generator().manual_seed(13)
    a, b, c = (torch.randn(2, *p.known.shape, generator=g) for _ in range(3))
    noise = torch.randn(2, *p.known.shape, generator=g)
    out = sample_keyframe_first(perfect(a), p, schedule(6), noise=noise, i2v=perfect(b), keyframe_frames=1,
                                cuts={3: (p.window(3, 1), perfect(c[:, :, 3:4]))})
    torch.testing.assert_close(out[:, :, 0], a[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 3], c[:, :, 3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, [1, 2, 4, 5]], b[:, :, [1, 2, 4, 5]], atol=1e-5, rtol=1e-5)
    seen = []
    den = {n: (lambda n: lambda x, t, tx, gt: seen.append((n, x.clone(), t.clone())) or smooth(x, t, tx, gt))(n)
           for n in ("key", "cut", "i2v")}
    shot = p.window(4, 1)                                                      # drawn as frame 4 sees it, kept at 3
    shot.gate = shot.gate * 0.5
    out = sample_keyframe_first(den["key"], p, schedule(4), 2.0, noise=noise, i2v=den["i2v"], keyframe_frames=1,
                                cuts={3: (shot, den["cut"])})
    assert [n for n, _, _ in seen] == ["key"] * 4 + ["cut"] * 4 + ["i2v"] * 4
    cut = [(x, t) for n, x, t in seen if n == "cut"]
    assert all(x.shape[2] == 1 for x, _ in cut) and torch.equal(cut[0][0][:2], noise[:, :, 3:4])
    for _, x, t in seen[8:]:                                                   # the second pass sees both clean
        assert (t[:, [0, 3]] == 0).all() and (t[:, [1, 2, 4, 5]] > 0).all()
    drawn = sample(den["cut"], shot, schedule(4), 2.0, noise=noise[:, :, 3:4])
    torch.testing.assert_close(out[:, :, 3:4], drawn)                         # kept exactly as drawn
    assert not torch.allclose(drawn, sample(den["cut"], p.window(3, 1), schedule(4), 2.0, noise=noise[:, :, 3:4]))


def test_steps_that_move_no_frame_are_skipped_with_the_same_result():
    """Per-token mode: while every free frame still waits at its start level a step changes nothing, so it is not
    run: a remix at 0.5 calls the denoiser only from 0.5 down, and returns what the schedule from 0.5 returns."""
    p = fake_plan(levels=[0.0, 0.5, 0.5, 0.5, 0.5])
    eps = torch.randn(1, *p.known.shape, generator=torch.Generator().manual_seed(2))
    calls = []
    den = lambda x, t, tx, g: calls.append(t.clone()) or smooth(x, t, tx, g)  # noqa: E731
    out = sample(den, p, schedule(10), noise=eps)
    assert len(calls) == 5 and all((t[:, 1:] <= 0.5).all() for t in calls)
    torch.testing.assert_close(out, sample(smooth, p, torch.linspace(0.5, 0.0, 6), noise=eps))
    calls.clear()
    sample(den, p, schedule(10), noise=eps, per_token=False)                  # replacement mode runs every step
    assert len(calls) == 10


def test_a_guide_starts_the_second_pass_from_its_rough_clip_at_its_level():
    """guide(known) -> a rough clip: the second pass starts every free frame on the path from that clip at
    guide_level (a remix of it), keyframes and cuts still frozen; a guide that gives None changes nothing."""
    p = fake_plan(F=6)
    g = torch.Generator().manual_seed(21)
    rough, noise = torch.randn(2, *p.known.shape, generator=g), torch.randn(2, *p.known.shape, generator=g)
    told, seen = [], []

    def guide(known):
        told.append(known.clone())
        return rough
    i2v = lambda x, t, tx, gt: seen.append((x.clone(), t.clone())) or smooth(x, t, tx, gt)  # noqa: E731
    cut = (p.window(3, 1), smooth)
    out = sample_keyframe_first(smooth, p, schedule(10), noise=noise, i2v=i2v, keyframe_frames=1, cuts={3: cut},
                                guide=guide, guide_level=0.4)
    keys = sample_keyframe_first(smooth, p, schedule(10), noise=noise, keyframe_frames=1, cuts={3: cut})
    assert torch.equal(told[0][:, :, [0, 3]], keys[:, :, [0, 3]])             # the guide is shown the keyframes
    assert torch.equal(out[:, :, [0, 3]], keys[:, :, [0, 3]])
    x0, t0 = seen[0]
    assert len(seen) == 4 and (t0[:, [0, 3]] == 0).all() and (t0[:, [1, 2, 4, 5]] == 0.4).all()
    free = [1, 2, 4, 5]
    torch.testing.assert_close(x0[:, :, free], 0.6 * rough[:, :, free] + 0.4 * noise[:, :, free])
    none = sample_keyframe_first(smooth, p, schedule(10), noise=noise, keyframe_frames=1, cuts={3: cut},
                                 guide=lambda known: None, guide_level=0.4)
    assert torch.equal(none, keys)


def test_keyframes_are_drawn_at_their_own_guidance_scale():
    """keyframe_guidance: the first keyframe and each cut's are guided at it, the second pass at `guidance`."""
    p = fake_plan(F=6)
    noise = torch.randn(1, *p.known.shape, generator=torch.Generator().manual_seed(4))
    kw = {"noise": noise, "cfg_batch": False}           # smooth tells the branches apart only one at a time
    out = sample_keyframe_first(smooth, p, schedule(4), 4.0, keyframe_frames=1, cuts={3: (p.window(3, 1), smooth)},
                                keyframe_guidance=2.0, **kw)
    for j in (0, 3):
        kw["noise"] = noise[:, :, j:j + 1]
        drawn = sample(smooth, p.window(j, 1), schedule(4), 2.0, **kw)
        torch.testing.assert_close(out[:, :, j:j + 1], drawn)
        assert not torch.allclose(drawn, sample(smooth, p.window(j, 1), schedule(4), 4.0, **kw))
