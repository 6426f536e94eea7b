"""Issue 23: one video across several devices (engine/backends/parallel.py) — diffusers' context parallelism on the
ltx and wan backends, two gloo ranks on the CPU (the same code a Ray worker owning N GPUs runs with NCCL), against
one process on the same tiny random weights."""
import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from engine import ops  # noqa: E402
from engine.api import Settings, generate, generate_latents  # noqa: E402
from engine.timeline import TextCard  # noqa: E402

SIZE = dict(fps=8, aspect="1:1", resolution=32)


def tiny(name: str, device: str = "cpu"):
    """The tiny random backend of tests/test_<name>.py (seeded: every process builds the same weights)."""
    if name == "ltx":
        from engine.backends.ltx import LTXBackend
        from tests.test_ltx import tiny_pipe
        return LTXBackend.from_pipe(tiny_pipe())
    from engine.backends.wan import WanBackend
    from tests.test_wan import tiny_pipe
    return WanBackend.from_pipe(tiny_pipe())


def storyboard():
    """Two text cards, so the gate differs from frame to frame (the per-token bias the ranks must split)."""
    return ops.storyboard([TextCard(0.0, 1.0, "a red ball"), TextCard(1.0, 2.0, "a blue box")], 2.0,
                          crossfade_s=0.25, seed=4, **SIZE)


@pytest.mark.parametrize("name", ["wan", "ltx"])
def test_two_ranks_make_the_frames_one_process_makes(name):
    import functools

    from engine.backends.parallel import load_parallel
    one = tiny(name)
    tl, settings = storyboard(), Settings(steps=2, guidance=3.0)
    want_latents = generate_latents(tl, one, settings)[1]                       # (B, C, F, h, w)
    want = generate(tl, one, settings)[0]                                       # (N, H, W, 3)
    two = load_parallel(name, 2, loader=functools.partial(tiny, name))
    try:
        assert two.world == 2 and all(m._parallel_config is not None for m in _models(two))
        got_latents = generate_latents(tl, two, settings)[1]
        got = generate(tl, two, settings)[0]
    finally:
        two.close()
    assert not torch.distributed.is_initialized()
    assert torch.allclose(got_latents, want_latents, atol=1e-4), (got_latents - want_latents).abs().max()
    assert got.shape == want.shape and np.abs(got.astype(int) - want.astype(int)).max() <= 1


def _models(backend):
    from engine.backends.parallel import transformers_of
    return transformers_of(backend.backend)


def test_one_rank_is_refused_and_a_backend_without_a_transformer_says_so(backend):
    from engine.backends.parallel import load_parallel, transformers_of
    with pytest.raises(ValueError, match="gpus: context parallelism needs 2 or more"):
        load_parallel("wan", 1)
    with pytest.raises(TypeError, match="ltx and wan"):
        transformers_of(backend)                                                # the reference backend
