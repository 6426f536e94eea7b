"""Gated cross-attention: a closed gate really blocks; a soft gate weights tokens by g."""
import pytest
import torch

from engine.attention import gate_bias, gated_attention
from engine.plan import compile
from engine.timeline import TextCard, Timeline


def cross_outputs(backend, tl):
    """Cross-attention output of every block, from one denoiser call on fixed inputs."""
    p = compile(tl, backend)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, *p.known.shape, generator=g)
    t = torch.full((1, p.known.shape[1]), 0.7)
    outs = []
    hooks = [blk.cross.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone()))
             for blk in backend.model.blocks]
    try:
        backend.denoise(x, t, p.text[None], p.gate[None])
    finally:
        for h in hooks:
            h.remove()
    return p, outs


@pytest.mark.parametrize("crossfade", [0.0, 0.3])
def test_changing_a_cards_text_leaves_other_frames_bit_identical(backend, crossfade):
    def tl(second):
        return Timeline(duration_s=2, fps=6, crossfade_s=crossfade,
                        cards=[TextCard(0, 1, "a red ball"), TextCard(1, 2, second)])
    p, a = cross_outputs(backend, tl("a blue box"))
    _, b = cross_outputs(backend, tl("a green cat"))
    seg = p.segments[1]
    open_frames = (p.gate[:, seg.start:seg.end].amax(1) > 0)
    tokens_per_frame = p.grid.latent_h * p.grid.latent_w
    outside = (~open_frames).repeat_interleave(tokens_per_frame)
    assert outside.any() and (~outside).any()
    # first block: its input does not depend on the text, so the gate alone decides
    assert torch.equal(a[0][0, outside], b[0][0, outside])
    assert not torch.allclose(a[0][0, ~outside], b[0][0, ~outside])


def test_soft_gate_is_a_multiplicative_token_weight():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 4, generator=g) for _ in range(3))
    k, v = k[:, :, :5], v[:, :, :5]
    gate = torch.tensor([[[1.0, 0.5, 0.0, 0.25, 1.0]] * 3])           # (B=1, F=3, L=5); 2 tokens per frame
    out = gated_attention(q, k, v, gate_bias(gate, 2))
    logits = q @ k.transpose(-1, -2) / 2.0                             # sqrt(d) = 2
    w = gate[0, 0] * logits.exp()
    expected = (w / w.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_a_frame_with_no_open_token_is_refused():
    from types import SimpleNamespace

    from engine.sampler import batch_conditioning
    plan = SimpleNamespace(text=torch.zeros(2, 4), gate=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="at least one text token"):
        batch_conditioning(plan, 1, False, "cpu", torch.float32)


def test_engine_never_imports_gradio():
    import subprocess
    import sys
    code = ("import sys, pkgutil, importlib, engine\n"
            "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
            "    importlib.import_module(m.name)\n"
            "assert not any(k == 'gradio' or k.startswith('gradio.') for k in sys.modules), 'engine imported gradio'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
