"""Continue the embedded model's training run on a lent GPU, in one command (issue 20).

A lent machine takes a 64 MiB working tree and has torch and transformers but neither the
text encoder's package (90 MB of fp32 weights) nor imageio-ffmpeg. So:

    python bench/gpu_train.py pack --run runs/kz_p1                # here: fills .carry/gpu_train/
    python bench/gpu_train.py pack --run runs/new --scratch        # a fresh machine: the recipe from scratch
    python bench/gpu_train.py pack --run runs/new --weights assets/toy_dit.safetensors -- <flags>   # or from shipped weights
    # device tool: carry [".carry"], command:
    python bench/gpu_train.py train --minutes 8 --out $OUT          # there: the same recipe on cuda
    python -m engine.backends.toy.train dit --run runs/<next> --init <files_at>/toy_dit_gpu.safetensors ...

The pack holds the run's last kept EMA weights (fp16; none with --scratch) and all-MiniLM-L6-v2 slimmed to what the
world's captions use: its layers in fp16 and only the word-embedding rows of the tokens the world's
captions are made of (fp32). The encoder rebuilt there gives NaN for any other token, and the train
step stops on it rather than learning from it. A GPU run starts a fresh optimiser from those
weights (the full checkpoint, 83 MB, does not travel) and sends back fp16 EMA weights and its log;
the model card records which steps ran where. The default recipe (RECIPE) is the keyframe model of
session 21: it ships as assets/toy_dit_key.safetensors' successor only once it beats the keyframe LoRA
on the small eval, and as a full DiT it needs the assets rearranged (model card, session 21).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CARRY = Path(".carry/gpu_train")
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
WORDS = "embeddings.word_embeddings.weight"
# The candidate recipe (model card, issue 20, session 21): a keyframe model of 1x1 latent patches trained from
# scratch on single frames (runs/kz_p1 on the CPU), with a batch a GPU can fill (32 x 4 = 128 frames a step).
RECIPE = ["--keyframe-share", "1.0", "--patch", "1", "--batch", "32", "--keyframe-batch", "4", "--lr", "1e-3",
          "--probe-every", "0", "--seed", "31"]   # a seed of its own: not the CPU run's data again


def world_token_ids(tokenizer, n: int = 4000) -> list[int]:
    """Every token id the world's captions (n random ones of each kind) use, and the special ones
    (a padded batch reads [PAD]'s row too: a NaN there spoils every prompt of the batch)."""
    from engine.backends.toy import world
    rng = np.random.default_rng(0)
    texts = [""]
    for _ in range(n):
        scene = world.sample_scene(rng, (1, 1))
        texts += [world.caption(scene, rng), world.caption(scene)]
    ids = {i for t in texts for i in tokenizer(t)["input_ids"]} | set(tokenizer.all_special_ids)
    return sorted(ids)


def pack(run: Path, weights: Path | None, flags: list[str], carry: Path = CARRY, scratch: bool = False) -> Path:
    """Fill .carry/gpu_train/ with init weights (none when scratch), the slim encoder and the training flags."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer
    from engine.backends.toy.backend import text_encoder_folder
    kept = sorted(run.glob("ckpt_*.pt"))
    weights = None if scratch else weights or (kept[-1] if kept else None)
    if not scratch and (weights is None or not weights.exists()):
        raise SystemExit(f"pack: no kept weights (ckpt_*.pt) in {run}; pass --weights, or --scratch to start afresh")
    src = text_encoder_folder()
    shutil.rmtree(carry, ignore_errors=True)
    (carry / "minilm").mkdir(parents=True)
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, carry / "minilm" / name)
    ids = world_token_ids(AutoTokenizer.from_pretrained(src, local_files_only=True))
    state = load_file(str(src / "model.safetensors"))
    slim = {k: v.half() for k, v in state.items() if k != WORDS}
    slim["word_rows"], slim["word_ids"] = state[WORDS][ids].clone(), torch.tensor(ids)
    save_file(slim, str(carry / "minilm" / "slim.safetensors"), metadata={"vocab": str(state[WORDS].shape[0])})
    if weights is None:
        init = None
    elif weights.suffix == ".pt":   # fp16, as shipped: the pack and the tracked files share the device's 64 MiB
        state = torch.load(weights, map_location="cpu", weights_only=True)
        for key in ("model", "ema"):
            if key in state:
                state[key] = {k: v.half() if v.is_floating_point() else v for k, v in state[key].items()}
        init = "init.pt"
        torch.save(state, carry / init)
    else:   # shipped weights (a fresh machine has no run): the suffix says how to read them
        init = "init.safetensors"
        shutil.copy(weights, carry / init)
    (carry / "flags.json").write_text(json.dumps({"from": str(weights or "scratch"), "init": init, "flags": flags}))
    return carry


def rebuild_encoder(carry: Path, folder: Path) -> Path:
    """The slim encoder back as a transformers folder: fp32 layers, NaN rows for tokens not packed."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(carry / "minilm" / name, folder / name)
    with safe_open(str(carry / "minilm" / "slim.safetensors"), "pt") as f:
        vocab = int(f.metadata()["vocab"])
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    rows, ids = state.pop("word_rows"), state.pop("word_ids").long()
    words = torch.full((vocab, rows.shape[1]), float("nan"))
    words[ids] = rows
    state[WORDS] = words
    save_file(state, str(folder / "model.safetensors"))
    return folder


def guard_text(MiniLM):
    """Stop on a caption the packed vocabulary cannot encode (its embeddings are NaN); -> the unguarded encode."""
    encode = MiniLM.encode

    def checked(self, prompts):
        out = encode(self, prompts)
        for p, (tok, _) in zip(prompts, out):
            if not torch.isfinite(tok).all():
                raise SystemExit(f"gpu_train: the caption {p!r} uses a token the pack left out; pack again")
        return out
    MiniLM.encode = checked
    return encode


def train(carry: Path, out: Path, minutes: float, device: str, max_steps: int = 0, scratch: Path = Path("/tmp")) -> Path:
    """Continue the packed run here; -> the fp16 EMA weights written to out. The slim encoder and the caption
    guard hold for this call only: a process that goes on (a test run) gets its own encoder back."""
    import os
    if "imageio_ffmpeg" not in sys.modules:
        try:
            import imageio_ffmpeg  # noqa: F401
        except ModuleNotFoundError:   # only video writing needs it, and training writes none
            sys.modules["imageio_ffmpeg"] = types.ModuleType("imageio_ffmpeg")
    from engine.backends.toy import backend
    before = os.environ.get("CINEPATCH_TEXT_ENCODER")
    os.environ["CINEPATCH_TEXT_ENCODER"] = str(rebuild_encoder(carry, scratch / "cinepatch_minilm"))
    encode = guard_text(backend.MiniLM)
    try:
        return _train(carry, out, minutes, device, max_steps, scratch)
    finally:
        backend.MiniLM.encode = encode
        if before is None:
            os.environ.pop("CINEPATCH_TEXT_ENCODER", None)
        else:
            os.environ["CINEPATCH_TEXT_ENCODER"] = before


def _train(carry: Path, out: Path, minutes: float, device: str, max_steps: int, scratch: Path) -> Path:
    """train()'s run, with the encoder in place -> the fp16 EMA weights written to out."""
    from engine.backends.toy import train as toy_train
    packed = json.loads((carry / "flags.json").read_text())
    flags, init = packed["flags"], packed.get("init", "init.pt")
    start = [] if init is None else ["--init", str(carry / init)]
    out.mkdir(parents=True, exist_ok=True)
    run = scratch / "cinepatch_gpu_run"
    shutil.rmtree(run, ignore_errors=True)
    budget = ["--max-steps", str(max_steps)] if max_steps else ["--minutes", str(minutes)]
    toy_train.main(["dit", "--run", str(run), *start, "--device", device, *budget,
                    "--eval-every", "1e9", "--export", "--out", str(out / "toy_dit_gpu.safetensors"), *flags])
    shutil.copy(run / "log.txt", out / "log.txt")
    return out / "toy_dit_gpu.safetensors"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python bench/gpu_train.py")
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="here: fill .carry/gpu_train/ for the device tool")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None, help="default: the run's last kept ckpt_*.pt")
    p.add_argument("--scratch", action="store_true", help="no weights: the recipe starts from scratch there")
    p.add_argument("flags", nargs="*", help="training flags after --, default the candidate recipe")
    t = sub.add_parser("train", help="there: continue the packed run")
    t.add_argument("--minutes", type=float, default=8)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--device", default="cuda")
    t.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.verb == "pack":
        folder = pack(args.run, args.weights, args.flags or RECIPE, scratch=args.scratch)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"packed {folder} ({size / 2**20:.1f} MiB); carry [\".carry\"] with the device tool")
    else:
        print(f"wrote {train(CARRY, args.out, args.minutes, args.device, args.max_steps)}")


if __name__ == "__main__":
    main()
