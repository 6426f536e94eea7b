"""Continue the embedded model's training run on a lent GPU, in one command (issue 20).

A lent machine takes a 64 MiB working tree and has torch, transformers and peft but neither the
text encoder's package (90 MB of fp32 weights) nor imageio-ffmpeg. So:

    python bench/gpu_train.py pack                                  # here: fills .carry/gpu_train/ (RECIPE)
    python bench/gpu_train.py pack --run runs/gi4                   # or from a run's last kept weights
    python bench/gpu_train.py pack --recipe key1x1 --scratch        # session 21's keyframe model from scratch
    # device tool: carry [".carry"], command:
    python bench/gpu_train.py train --minutes 8 --out $OUT          # there: the same recipe on cuda
    cp <files_at>/toy_dit_i2v.safetensors assets/                   # here: eval it, ship it, or go on from it

The default recipe (RECIPE, "i2v") goes on with the shipped image-to-video model, the run every session since 22
has continued on the CPU (gi1, gi2, ...): a LoRA on assets/toy_dit.safetensors (since session 25 the image-to-video
model itself), read where it lies in the carried working tree (nothing to pack), with a GPU's batch. It sends back
the fine-tune as a LoRA of that file (adapter --svd), which the backend loads beside it as its image-to-video model,
or seeds the next run (--init); the 25 MB of assets/ leave no room for it beside the keyframe model, so it ships
merged into toy_dit.safetensors.
The pack holds a run's last kept EMA weights (fp16) where one is named, and all-MiniLM-L6-v2 slimmed to what the
world's captions use: its layers in fp16 and only the word-embedding rows of the tokens the world's
captions are made of (fp32). The encoder rebuilt there gives NaN for any other token, and the train
step stops on it rather than learning from it. A GPU run starts a fresh optimiser from those
weights (the full checkpoint, 83 MB, does not travel) and sends back fp16 weights and its log;
the model card records which steps ran where.
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
REPO = Path(__file__).resolve().parent.parent
# name -> (training flags, weights it starts from in the tracked tree (None: a run's, or scratch), what it sends back:
# "i2v" the image-to-video file as assets/ store it, "dit" the exported DiT)
RECIPES = {
    # the shipped image-to-video model continued as sessions 23-24 did on the CPU (gi2, gi3), at a GPU's batch
    "i2v": (["--lora", "8", "--i2v", "1.0", "--grounded", "--layout-lr", "10", "--batch", "32",
             "--fresh", "8", "--bf16", "--probe-every", "0", "--seed", "31"], "assets/toy_dit.safetensors", "i2v"),
    # session 21's candidate: a keyframe model of 1x1 latent patches from scratch (runs/kz_p1 on the CPU), 32 x 4
    # frames a step, told the grounded layout the shipped keyframe model reads (session 23): since session 25 the
    # keyframe's drawing is carried into the whole shot, so this model is where a GPU's minutes go next
    "key1x1": (["--keyframe-share", "1.0", "--patch", "1", "--grounded", "--layout-lr", "10", "--batch", "32",
                "--keyframe-batch", "4", "--lr", "1e-3", "--probe-every", "0", "--seed", "31"], None, "dit"),
}   # seeds of their own: not the CPU runs' data again
RECIPE = "i2v"


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


def pack(run: Path | None, weights: Path | None, flags: list[str], carry: Path = CARRY, scratch: bool = False,
         ship: str = "dit", tracked: str | None = None) -> Path:
    """Fill .carry/gpu_train/ with init weights (none when scratch; a path in the tracked tree where `tracked` names
    one and no run or weights are given, read there in place), the slim encoder, the training flags and what to
    send back (`ship`, RECIPES)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer
    from engine.backends.toy.backend import text_encoder_folder
    kept = sorted(run.glob("ckpt_*.pt")) if run is not None else []
    weights = None if scratch else weights or (kept[-1] if kept else None)
    if not scratch and weights is None and tracked is not None and run is None:
        weights = REPO / tracked
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
    elif weights.resolve().parent == REPO / "assets":   # tracked: it travels with the tree (a LoRA beside its DiT)
        init = str(weights.resolve().relative_to(REPO))
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
    (carry / "flags.json").write_text(json.dumps({"from": str(weights or "scratch"), "init": init, "flags": flags,
                                                  "ship": ship}))
    return carry


def init_path(carry: Path, init: str) -> Path:
    """Where a packed init lies: in the pack, or (a tracked file, as pack records one) in the working tree."""
    return carry / init if (carry / init).exists() else REPO / init


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
    """train()'s run, with the encoder in place -> the fp16 weights written to out: the exported DiT, or for the
    image-to-video recipe the file assets/ holds (adapter --svd, a LoRA of the tracked toy_dit.safetensors)."""
    from engine.backends.toy import adapter
    from engine.backends.toy import train as toy_train
    from engine.backends.toy.backend import I2V_NAME
    packed = json.loads((carry / "flags.json").read_text())
    flags, init, ship = packed["flags"], packed.get("init", "init.pt"), packed.get("ship", "dit")
    start = [] if init is None else ["--init", str(init_path(carry, init))]
    out.mkdir(parents=True, exist_ok=True)
    run = scratch / "cinepatch_gpu_run"
    shutil.rmtree(run, ignore_errors=True)
    budget = ["--max-steps", str(max_steps)] if max_steps else ["--minutes", str(minutes)]
    export = ["--export", "--out", str(out / "toy_dit_gpu.safetensors")] if ship == "dit" else []
    toy_train.main(["dit", "--run", str(run), *start, "--device", device, *budget, "--eval-every", "1e9",
                    *export, *flags])
    shutil.copy(run / "log.txt", out / "log.txt")
    if ship == "dit":
        return out / "toy_dit_gpu.safetensors"
    adapter.main([str(run / "ckpt.pt"), "--svd", "--out", str(out / I2V_NAME)])
    return out / I2V_NAME


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python bench/gpu_train.py")
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="here: fill .carry/gpu_train/ for the device tool")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=RECIPE)
    p.add_argument("--run", type=Path, default=None, help="go on from this run's last kept ckpt_*.pt")
    p.add_argument("--weights", type=Path, default=None, help="go on from these weights (default: the run's, "
                   "else the recipe's shipped file)")
    p.add_argument("--scratch", action="store_true", help="no weights: the recipe starts from scratch there")
    p.add_argument("flags", nargs="*", help="training flags after --, default the recipe's")
    t = sub.add_parser("train", help="there: continue the packed run")
    t.add_argument("--minutes", type=float, default=8)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--device", default="cuda")
    t.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.verb == "pack":
        flags, tracked, ship = RECIPES[args.recipe]
        folder = pack(args.run, args.weights, args.flags or flags, scratch=args.scratch, ship=ship, tracked=tracked)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"packed {folder} ({size / 2**20:.1f} MiB); carry [\".carry\"] with the device tool")
    else:
        print(f"wrote {train(CARRY, args.out, args.minutes, args.device, args.max_steps)}")


if __name__ == "__main__":
    main()
