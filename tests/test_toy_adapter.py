"""The embedded image-to-video weights as a LoRA of the DiT (engine/backends/toy/adapter.py): what is
extracted merges back into the fine-tune, the base is untouched, the file fits, a damaged file is one line."""
import copy
import dataclasses
import json

import pytest
import torch

from engine.backends.toy.adapter import apply, extract, load_adapter, lora_rank, lora_targets
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
            load_adapter(base, p)
        msg = str(e.value)
        assert msg.startswith("weights: ") and str(p) in msg and "engine.backends.toy.adapter" in msg
        assert "\n" not in msg


def test_the_shipped_weights_fit_their_budget():
    """The embedded model's files together stay <= 25 MB (the README's promise for a fresh clone)."""
    sizes = {p.name: p.stat().st_size for p in ASSETS.glob("*.safetensors")}
    assert {"toy_dit.safetensors", "toy_vae.safetensors"} <= set(sizes)
    assert sum(sizes.values()) <= 25_000_000, sizes


def test_a_trained_lora_starts_as_no_change_trains_only_its_factors_and_ships_as_it_is(tmp_path):
    """train --lora: a rank-r peft LoRA around the base; only A and B learn, B starts at zero (no change);
    its checkpoint loads merged (engine.probe.load_weights) and its file (lora_tensors) merges back to it."""
    from engine.backends.toy.adapter import lora_checkpoint, lora_model, lora_tensors
    from engine.probe import load_weights
    base, _ = tiny_pair(rank=4)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    x, t = torch.randn(2, 4, 2, 4, 4), torch.full((2, 2), 0.5)
    text, gate = torch.randn(2, 3, 384), torch.ones(2, 2, 3)
    want = base(x, t, text, gate).detach()
    lora = lora_model(copy.deepcopy(base), 4)
    torch.testing.assert_close(lora(x, t, text, gate), want)                     # B = 0: the base's output
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        opt.zero_grad(); (lora(x, t, text, gate) - 1).pow(2).mean().backward(); opt.step()   # noqa: E702
    tuned_out = lora(x, t, text, gate).detach()
    assert not torch.allclose(tuned_out, want, atol=1e-3)
    path = tmp_path / "ckpt_000003.pt"
    torch.save({"model": lora.state_dict(), "config": dataclasses.asdict(TINY), "step": 3}, path)
    merged = load_weights(path)
    assert type(merged) is DiT and type(merged.blocks[0].attn.qkv) is torch.nn.Linear
    torch.testing.assert_close(merged(x, t, text, gate), tuned_out, atol=1e-4, rtol=1e-4)
    tensors, meta = lora_tensors(lora_checkpoint(torch.load(path, weights_only=True)["model"], TINY))
    assert set(json.loads(meta["lora"])["ranks"].values()) == {4} and not any(k.startswith("full.") for k in tensors)
    torch.testing.assert_close(apply(base, tensors)(x, t, text, gate), tuned_out, atol=5e-3, rtol=5e-3)  # fp16 file
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert lora_checkpoint(base.state_dict(), TINY) is None                      # plain weights are not a LoRA


def test_the_adapter_cli_stores_a_lora_checkpoint_as_it_is(tmp_path):
    """`python -m engine.backends.toy.adapter ckpt.pt --keyframe-frames 1` on a LoRA run's kept checkpoint: the
    file holds its factors alone, says how many latent frames its keyframes cover, and merges back to it."""
    from engine.backends.toy.adapter import lora_model, main
    from engine.backends.toy.backend import _read_weights, load_dit
    base, _ = tiny_pair(rank=4)
    write_weights(base.state_dict(), {"config": json.dumps(dataclasses.asdict(TINY))}, tmp_path / "base.safetensors")
    base = load_dit(tmp_path / "base.safetensors")             # the base as stored (fp16)
    lora = lora_model(copy.deepcopy(base), 4)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(n)))
    x, t = torch.randn(2, 4, 2, 4, 4), torch.full((2, 2), 0.5)
    text, gate = torch.randn(2, 3, 384), torch.ones(2, 2, 3)
    want = lora(x, t, text, gate).detach()
    torch.save({"model": lora.state_dict(), "config": dataclasses.asdict(TINY), "step": 7}, tmp_path / "ckpt.pt")
    out = tmp_path / "key.safetensors"
    main([str(tmp_path / "ckpt.pt"), "--base", str(tmp_path / "base.safetensors"), "--out", str(out),
          "--keyframe-frames", "1"])
    tensors, meta = _read_weights(out, "key")
    assert meta["keyframe_frames"] == "1" and meta["source"].endswith("ckpt.pt")
    assert set(json.loads(meta["lora"])["ranks"].values()) == {4} and not any(k.startswith("full.") for k in tensors)
    torch.testing.assert_close(load_adapter(base, out)(x, t, text, gate), want, atol=5e-3, rtol=5e-3)


def test_a_whole_model_with_factored_adaln_loads_and_draws_as_the_model_it_was(tmp_path):
    """adapter --whole RANK: every tensor as it was but the adaLN weights, stored as two factors on the timestep
    embedding's top RANK directions; load_dit multiplies them back, and the model's velocity moves by less than
    what fp16 storage moves it; the shipped keyframe file is stored so."""
    import dataclasses

    from safetensors import safe_open

    from engine.backends.toy.adapter import factor_adaln, main
    from engine.backends.toy.backend import ASSETS, KEY_NAME, load_dit, unfactor
    from engine.backends.toy.model import DiT, DiTConfig
    from engine.backends.toy.train import Run
    torch.manual_seed(0)
    model = DiT(DiTConfig(in_channels=16, patch=1, width=64, depth=2, heads=2, text_dim=384)).eval()
    for blk in model.blocks:                                   # adaLN-Zero starts at zero: give it something to keep
        torch.nn.init.normal_(blk.ada[-1].weight, std=0.05)
    tensors, err = factor_adaln(model, 32)                    # an untrained embedding's curve spans every direction:
    assert err > factor_adaln(model, 48)[1] > factor_adaln(model, 64)[1] and factor_adaln(model, 64)[1] < 1e-4
    assert "blocks.0.ada.1.weight:u" in tensors and "blocks.0.ada.1.weight" not in tensors
    assert tensors["blocks.0.ada.1.weight:u"].shape == (6 * 64, 32)
    back = unfactor(tensors)
    assert back.keys() == model.state_dict().keys()
    assert torch.equal(back["blocks.0.ada.1.weight"], tensors["blocks.0.ada.1.weight:u"] @ tensors["blocks.0.ada.1.weight:v"])
    Run(str(tmp_path / "run"), 1).keep(model.state_dict(), dataclasses.asdict(model.cfg))
    [kept] = (tmp_path / "run").glob("ckpt_*.pt")
    main([str(kept), "--whole", "64", "--keyframe-frames", "1", "--out", str(tmp_path / "key.safetensors")])
    loaded = load_dit(tmp_path / "key.safetensors")
    x, t = torch.randn(2, 16, 1, 4, 6), torch.rand(2, 1)
    text, gate = torch.randn(2, 5, 384), torch.ones(2, 1, 5)
    with torch.no_grad():
        want, got = model(x, t, text, gate), loaded(x, t, text, gate)
        half = DiT(model.cfg).eval()
        half.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
        rounding = (half(x, t, text, gate) - want).abs().max()
    assert (got - want).abs().max() < 4 * rounding + 1e-4
    with safe_open(str(ASSETS / KEY_NAME), "pt") as f:
        assert any(k.endswith(":u") for k in f.keys()) and f.metadata()["keyframe_frames"] == "1"
