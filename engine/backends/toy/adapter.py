"""The embedded model's image-to-video and keyframe weights, shipped as LoRAs of the text-to-video DiT (assets/).

Keyframe-first sampling (engine/sampler.py) draws a clip's first frame with the text-to-video DiT
(run 6: best colour and shape) and the rest with a fine-tune that reads a caption's motion from a given
first frame. Two full DiTs would not fit the 25 MB the embedded weights may take, so the fine-tune is
stored as its difference from the base: a peft LoRA per block linear (the delta's top singular vectors,
rank ~90 % of the full matrix's parameters) plus, in full, every other tensor that differs (biases,
norms, embeddings). Loading merges it back (peft's merge_and_unload): sampling costs what the base costs.

The keyframe model is trained as a LoRA from the start (train --lora 8 --keyframe-share 0.5) and stored
as it is: it draws keyframe-first's first latent frame, and the DiT keeps remix.

    python -m engine.backends.toy.adapter runs/ft_stage2b/ckpt_007200.pt     # writes assets/toy_dit_i2v.safetensors
    python -m engine.backends.toy.adapter runs/key/ckpt_001000.pt --out assets/toy_dit_key.safetensors --keyframe-frames 1

Since session 25 the image-to-video model ships merged as toy_dit.safetensors, and the keyframe model is a DiT of
its own (1x1 patches), stored whole (`--whole RANK`): its adaLN weights, which only ever see a function of the
timestep, as two factors of that rank (factor_adaln), so that the three files fit in 25 MB.

    python -m engine.backends.toy.adapter runs/kg1/ckpt_002500.pt --whole 128 --keyframe-frames 1 --out assets/toy_dit_key.safetensors
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

import torch

from engine.backends.toy.backend import ASSETS, I2V_NAME, _read_weights, write_weights
from engine.backends.toy.model import DiT, DiTConfig, fit_layout

KEEP = 0.9   # a LoRA may take this share of its full matrix's parameters


def lora_rank(out_features: int, in_features: int) -> int:
    """The largest multiple of 8 whose A (r, in) and B (out, r) together hold <= KEEP of the matrix."""
    return max(8, int(KEEP * out_features * in_features / (out_features + in_features)) // 8 * 8)


def lora_targets(model: DiT) -> dict[str, torch.nn.Linear]:
    """The transformer blocks' linear layers (the bulk of the weights), by module name."""
    return {n: m for n, m in model.named_modules() if n.startswith("blocks.") and isinstance(m, torch.nn.Linear)}


def lora_config(model: DiT, ranks: dict[str, int] | None = None):
    """peft's config for a LoRA of every block linear: ranks per module name (default: lora_rank's)."""
    from peft import LoraConfig
    ranks = ranks or {n: lora_rank(m.out_features, m.in_features) for n, m in lora_targets(model).items()}
    # alpha = rank: peft scales B @ A by alpha / r, so the stored factors are the delta itself
    return LoraConfig(r=8, lora_alpha=8, target_modules=list(ranks), rank_pattern=ranks, alpha_pattern=ranks)


def lora_model(model: DiT, rank: int) -> torch.nn.Module:
    """A rank-`rank` LoRA of every block linear around `model` (peft; B starts at zero, so it starts as no
    change), with only the LoRA factors trainable, and a layout input the base lacks (new, from zero) in full:
    a fine-tune small enough to ship beside the base."""
    from peft.tuners.lora import LoraModel
    lora = LoraModel(model, lora_config(model, {n: rank for n in lora_targets(model)}), "default")
    if model.cfg.layout:
        model.layout_in.requires_grad_(True)
    return lora


def lora_checkpoint(state: dict[str, torch.Tensor], cfg) -> torch.nn.Module | None:
    """A lora_model from a training checkpoint's state dict (None when it holds plain DiT weights)."""
    rank = next((v.shape[0] for k, v in state.items() if k.endswith("lora_A.default.weight")), None)
    if rank is None:
        return None
    lora = lora_model(DiT(cfg), rank)
    lora.load_state_dict(state)
    return lora


def file_ranks(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """The rank of each LoRA a file's tensors hold, by module name (from A's rows)."""
    return {k[len("lora."):-len(".lora_A.weight")]: v.shape[0] for k, v in tensors.items() if k.endswith("lora_A.weight")}


def lora_tensors(lora: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a trained lora_model in this file's format: what apply() reads back."""
    from peft import get_peft_model_state_dict
    sd = get_peft_model_state_dict(lora)                        # {"model.<name>.lora_A.weight": (r, in), ...}
    tensors = {"lora." + k[len("model."):]: v.to(torch.float16) for k, v in sd.items()}
    # tensors trained in full beside the LoRA (a new input: the layout's) are stored whole
    tensors.update({f"full.{k}": v.detach().to(torch.float16) for k, v in lora.model.named_parameters()
                    if v.requires_grad and "lora_" not in k})
    return tensors, {"lora": json.dumps({"ranks": file_ranks(tensors)}), "config": json.dumps(dataclasses.asdict(lora.model.cfg))}


@torch.no_grad()
def extract(base: DiT, tuned: DiT) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of `tuned` as a LoRA of `base`: per target, delta ~ B @ A from its SVD
    (B = U sqrt(S), A = sqrt(S) Vh, top r); every other tensor that differs from base, in full."""
    cfg = lora_config(base)
    tensors, targets = {}, lora_targets(base)
    tuned_sd = tuned.state_dict()
    for name, lin in targets.items():
        r = cfg.rank_pattern[name]
        u, s, vh = torch.linalg.svd(tuned_sd[f"{name}.weight"].float() - lin.weight.float(), full_matrices=False)
        root = s[:r].sqrt()
        tensors[f"lora.{name}.lora_B.weight"] = u[:, :r] * root                   # (out, r)
        tensors[f"lora.{name}.lora_A.weight"] = root[:, None] * vh[:r]            # (r, in)
    in_lora, base_sd = {f"{n}.weight" for n in targets}, base.state_dict()
    for k, v in tuned_sd.items():   # a tensor base lacks (a layout input) is stored whole too
        if k not in in_lora and (k not in base_sd or not torch.equal(base_sd[k], v)):
            tensors[f"full.{k}"] = v
    meta = {"lora": json.dumps({"ranks": cfg.rank_pattern}), "config": json.dumps(dataclasses.asdict(tuned.cfg))}
    return {k: v.to(torch.float16) for k, v in tensors.items()}, meta


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a file in this format; a missing or damaged file is the one-line weights error."""
    return _read_weights(Path(path), "i2v", "python -m engine.backends.toy.adapter <fine-tuned checkpoint>")


def set_factors(lora: torch.nn.Module, tensors: dict[str, torch.Tensor]):
    """Set a peft LoraModel's factors from a file's `lora.` tensors, in place."""
    from peft import set_peft_model_state_dict
    loaded = set_peft_model_state_dict(lora, {"model." + k[len("lora."):]: v.float()
                                              for k, v in tensors.items() if k.startswith("lora.")})
    if loaded.unexpected_keys:
        raise ValueError(f"LoRA tensors this DiT has no layer for: {loaded.unexpected_keys[:3]}")


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file's tensors stored whole, by their DiT names."""
    return {k[len("full."):]: v.float() for k, v in tensors.items() if k.startswith("full.")}


def load_lora(lora: torch.nn.Module, path: Path):
    """Set a lora_model's factors, and the tensors it trains in full (a layout input), from a LoRA file, in place:
    a LoRA run goes on from a shipped one. A file holding other full tensors (an SVD of a full fine-tune) is not one."""
    tensors, _ = read_lora_file(path)
    set_factors(lora, tensors)
    # a plain layout's input goes on under a grounded one: its new channels start at zero
    missing, unexpected = lora.model.load_state_dict(fit_layout(full_tensors(tensors), lora.model.cfg), strict=False)
    if unexpected:
        raise ValueError(f"{path} holds full tensors a LoRA run does not train ({unexpected[:3]}); give it as --init")


def widened(base: DiT, cfg: DiTConfig | None) -> DiT:
    """A copy of base under cfg, where cfg adds inputs base lacks (a layout): those start at zero."""
    if cfg is None or cfg == base.cfg:
        return copy.deepcopy(base)
    model = DiT(cfg)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not all(k.startswith("layout_in.") for k in missing):
        raise ValueError(f"these weights are not a LoRA of this DiT: {(missing + unexpected)[:3]}")
    return model


@torch.no_grad()
def apply(base: DiT, tensors: dict[str, torch.Tensor], cfg: DiTConfig | None = None) -> DiT:
    """A new DiT: base (under cfg, the file's, where it adds a layout input) with the LoRA merged in (peft)
    and the full tensors replaced; base is untouched."""
    from peft.tuners.lora import LoraModel
    lora = LoraModel(widened(base, cfg), lora_config(base, file_ranks(tensors)), "default")
    set_factors(lora, tensors)
    model = lora.merge_and_unload()
    model.load_state_dict({**model.state_dict(), **full_tensors(tensors)})
    return model.eval()


def load_adapter(base: DiT, path: Path = ASSETS / I2V_NAME) -> DiT:
    """A DiT stored as a LoRA of `base` (the image-to-video or the keyframe model): `path`'s LoRA merged into a
    copy of `base`; a missing or damaged file is the one-line weights error."""
    tensors, meta = read_lora_file(path)
    return apply(base, tensors, DiTConfig(**json.loads(meta["config"])) if "config" in meta else None)


@torch.no_grad()
def factor_adaln(model: DiT, rank: int, n_times: int = 2001) -> tuple[dict[str, torch.Tensor], float]:
    """(model's state dict with each adaLN weight stored as two factors, `name:u` (out, rank) and `name:v` (rank, in),
    which backend.unfactor multiplies back; the largest relative change of an adaLN output). An adaLN layer only
    ever sees SiLU(t_embed(t)), a curve in the model's width: its weight is kept on that curve's top `rank`
    directions over `n_times` timesteps in [0, 1]."""
    from engine.backends.toy.model import timestep_embedding
    t = torch.linspace(0, 1, n_times)
    c = torch.nn.functional.silu(model.t_embed(timestep_embedding(t, model.cfg.width)))     # (T, D)
    directions = torch.linalg.svd(c.T @ c)[0][:, :rank]                                     # (D, rank)
    state, err = dict(model.state_dict()), 0.0
    for name in [f"blocks.{i}.ada.1.weight" for i in range(len(model.blocks))] + ["ada_out.1.weight"]:
        w, bias = state.pop(name), state[name[:-len("weight")] + "bias"]                    # (out, D), (out,)
        state[name + ":u"], state[name + ":v"] = w @ directions, directions.T.contiguous()
        kept = c @ directions @ directions.T @ w.T                                            # (T, out)
        err = max(err, float(((kept - c @ w.T).norm(dim=1) / (c @ w.T + bias).norm(dim=1)).max()))
    return state, err


def main(argv=None):
    from engine.backends.toy.backend import load_dit
    from engine.probe import load_weights, read_checkpoint
    ap = argparse.ArgumentParser(prog="python -m engine.backends.toy.adapter",
                                 description="store a fine-tuned DiT as a LoRA of assets/toy_dit.safetensors")
    ap.add_argument("tuned", help="the fine-tune: runs/*/ckpt_*.pt (its EMA weights) or a .safetensors")
    ap.add_argument("--base", default=str(ASSETS / "toy_dit.safetensors"))
    ap.add_argument("--out", default=str(ASSETS / I2V_NAME))
    ap.add_argument("--svd", action="store_true",
                    help="store a LoRA run merged, by its delta's SVD from --base (a LoRA trained on top of another "
                         "fine-tune, e.g. the image-to-video model, is not a LoRA of --base)")
    ap.add_argument("--keyframe-frames", type=int, default=0,
                    help="the fine-tune draws keyframes of this many latent frames: say so in the file's metadata")
    ap.add_argument("--whole", type=int, default=0, metavar="RANK",
                    help="store the model whole, not as a LoRA of --base (a model of its own, e.g. a keyframe model "
                         "of 1x1 patches), its adaLN weights as factors of this rank (factor_adaln)")
    args = ap.parse_args(argv)
    tuned = read_checkpoint(args.tuned) if args.tuned.endswith(".pt") else load_weights(args.tuned)
    if args.whole:
        return write_whole(tuned, args)
    base = load_dit(Path(args.base))
    # a LoRA trained as one (train --lora) is stored as it is; any other fine-tune by its delta's SVD
    if hasattr(tuned, "merge_and_unload") and not args.svd:
        (tensors, meta), tuned = lora_tensors(tuned), tuned.merge_and_unload()
    else:
        tuned = tuned.merge_and_unload() if hasattr(tuned, "merge_and_unload") else tuned
        tensors, meta = extract(base, tuned)
    if args.keyframe_frames:
        meta["keyframe_frames"] = str(args.keyframe_frames)
    meta["source"] = str(args.tuned)
    write_weights(tensors, meta, Path(args.out))
    merged = apply(base, tensors, tuned.cfg)
    err = max(float((merged.state_dict()[k] - v).norm() / v.norm().clamp_min(1e-12))
              for k, v in tuned.state_dict().items())
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB); largest relative error of a "
          f"merged tensor {err:.4f}", file=sys.stderr)


def write_whole(tuned: DiT, args) -> None:
    """Write `tuned` (merged where a LoRA) whole to args.out with its adaLN factored, and say how far it moved."""
    tuned = (tuned.merge_and_unload() if hasattr(tuned, "merge_and_unload") else tuned).eval()
    meta = {"config": json.dumps(dataclasses.asdict(tuned.cfg)), "source": str(args.tuned)}
    if args.keyframe_frames:
        meta["keyframe_frames"] = str(args.keyframe_frames)
    tensors, err = factor_adaln(tuned, args.whole)
    write_weights(tensors, meta, Path(args.out))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB); largest relative change of an adaLN "
          f"output {err:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
