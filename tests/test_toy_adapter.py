"""The embedded image-to-video weights as a LoRA of the DiT (engine/backends/toy/adapter.py): what is
extracted merges back into the fine-tune, the base is untouched, the file fits, a damaged file is one line."""
import pytest
import torch

from engine.backends.toy.adapter import apply, extract, load_i2v, lora_rank, lora_targets
from engine.backends.toy.backend import ASSETS, write_weights
from engine.backends.toy.model import DiT, DiTConfig
from engine.params import InputError

TINY = DiTConfig(in_channels=4, width=32, depth=2, heads=2, text_dim=384)


def tiny_pair(rank: int) -> tuple[DiT, DiT]:
    """A random tiny DiT and a 'fine-tune' of it: each block linear moved by a rank-`rank` delta, a bias and
    a non-block layer changed in full."""
    g = torch.Generator().manual_seed(0)
    base = DiT(TINY).eval()
    with torch.no_grad():
        for p in base.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    tuned = DiT(TINY).eval()
    tuned.load_state_dict(base.state_dict())
    with torch.no_grad():
        for lin in lora_targets(tuned).values():
            o, i = lin.weight.shape
            lin.weight += 0.1 * torch.randn(o, rank, generator=g) @ torch.randn(rank, i, generator=g)
        tuned.blocks[0].mlp[0].bias += 0.3
        tuned.patch_in.weight += 0.05
    return base, tuned


@pytest.mark.parametrize("shape", [(192, 192), (576, 192), (384, 192), (768, 192), (192, 768), (1152, 192), (32, 32)])
def test_a_lora_rank_keeps_under_its_share_of_the_matrix(shape):
    o, i = shape
    r = lora_rank(o, i)
    assert r % 8 == 0 and r * (o + i) <= 0.9 * o * i < (r + 8) * (o + i)


def test_a_fine_tune_within_the_ranks_merges_back_exactly_and_the_base_is_untouched():
    base, tuned = tiny_pair(rank=4)                   # every lora_rank here is 8 >= 4: nothing is cut
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tensors, meta = extract(base, tuned)
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert "full.blocks.0.mlp.0.bias" in tensors and "full.patch_in.weight" in tensors
    assert "full.blocks.1.mlp.0.bias" not in tensors  # unchanged tensors are not stored
    merged = apply(base, tensors)
    for k, v in tuned.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[k], v, atol=2e-3, rtol=2e-3)   # fp16 storage
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert type(merged.blocks[0].attn.qkv) is torch.nn.Linear    # merged: sampling costs what the base costs
    x, t = torch.randn(1, 4, 2, 4, 4), torch.full((1, 2), 0.5)
    text, gate = torch.randn(1, 3, 384), torch.ones(1, 2, 3)
    torch.testing.assert_close(merged(x, t, text, gate), tuned(x, t, text, gate), atol=5e-3, rtol=5e-3)


def test_a_fine_tune_beyond_the_ranks_keeps_its_largest_directions():
    """A full-rank delta is cut to its top singular directions: the merged weight is the best rank-r
    approximation (Eckart-Young), nearer the fine-tune than the base is."""
    base, tuned = tiny_pair(rank=32)
    merged = apply(base, extract(base, tuned)[0])
    w0, w1 = base.blocks[1].attn.out.weight.detach(), tuned.blocks[1].attn.out.weight.detach()
    s = torch.linalg.svdvals(w1 - w0)
    r = lora_rank(*w0.shape)
    err = float((merged.blocks[1].attn.out.weight.detach() - w1).norm())
    assert err == pytest.approx(float(s[r:].norm()), rel=0.02)
    assert err < 0.7 * float((w1 - w0).norm())


def test_a_damaged_or_missing_adapter_is_the_one_line_weights_error(tmp_path):
    base, tuned = tiny_pair(rank=4)
    path = tmp_path / "toy_dit_i2v.safetensors"
    write_weights(*extract(base, tuned), path)
    path.write_bytes(path.read_bytes()[:1000])
    for p in (path, tmp_path / "nowhere.safetensors"):
        with pytest.raises(InputError) as e:
            load_i2v(base, p)
        msg = str(e.value)
        assert msg.startswith("weights: ") and str(p) in msg and "engine.backends.toy.adapter" in msg
        assert "\n" not in msg


def test_the_shipped_weights_fit_their_budget():
    """The embedded model's files together stay <= 25 MB (the README's promise for a fresh clone)."""
    sizes = {p.name: p.stat().st_size for p in ASSETS.glob("*.safetensors")}
    assert {"toy_dit.safetensors", "toy_vae.safetensors"} <= set(sizes)
    assert sum(sizes.values()) <= 25_000_000, sizes
