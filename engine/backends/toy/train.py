"""Train the embedded model on the procedural world: `python -m engine.backends.toy.train vae|dit`.

Both stages stream freshly rendered clips (no dataset on disk), train for a wall-clock
budget (`--minutes`) with a learning rate that decays over that budget, write resumable
checkpoints to `--run` every few minutes, log to `--run/log.txt`, and export fp16
safetensors into `assets/` with `--export`.

    python -m engine.backends.toy.train vae --minutes 15 --run runs/vae --export
    python -m engine.backends.toy.train dit --minutes 90 --run runs/dit --export
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.backends.toy import world
from engine.backends.toy.backend import ASSETS
from engine.backends.toy.vae import VAEConfig, VideoAE, widen_decoder
from engine.video_io import to_tensor

SIZES = ((112, 64), (64, 64), (64, 112))


# ----------------------------------------------------------------------------- shared
class Run:
    """Checkpoint, log and progress for one training run, budgeted in wall-clock minutes or, with
    max_steps, in steps (runs compared on a shared, noisy CPU must see the same schedule)."""

    def __init__(self, folder: str, minutes: float, max_steps: int = 0):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.budget = minutes * 60
        self.max_steps = max_steps
        self.elapsed = 0.0
        self.step = 0
        self.t0 = time.time()
        self.last_save = time.time()
        self.log_file = open(self.dir / "log.txt", "a")

    @property
    def progress(self) -> float:
        if self.max_steps:
            return min(1.0, self.step / self.max_steps)
        return min(1.0, (self.elapsed + time.time() - self.t0) / self.budget)

    def lr(self, peak: float, warmup: int = 200) -> float:
        """Linear warm-up over steps, cosine decay over the time budget."""
        return peak * min(1.0, (self.step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * self.progress)))

    def log(self, msg: str):
        print(msg, file=sys.stderr, flush=True)
        self.log_file.write(msg + "\n")
        self.log_file.flush()

    def save(self, state: dict, force: bool = False, every_s: float = 180):
        if force or time.time() - self.last_save > every_s:
            state = {**state, "step": self.step, "elapsed": self.elapsed + time.time() - self.t0}
            tmp = self.dir / "ckpt.pt.tmp"
            torch.save(state, tmp)
            tmp.replace(self.dir / "ckpt.pt")
            self.last_save = time.time()

    def keep(self, weights: dict, config: dict):
        """Weights alone at this step (ckpt_<step>.pt), so the probe can be rerun on any of them later."""
        torch.save({"model": weights, "config": config, "step": self.step}, self.dir / f"ckpt_{self.step:06d}.pt")

    def resume(self) -> dict | None:
        path = self.dir / "ckpt.pt"
        if not path.exists():
            return None
        state = torch.load(path, weights_only=False, map_location="cpu")  # a checkpoint from a GPU run resumes anywhere
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.log(f"resumed at step {self.step}, {self.elapsed / 60:.1f} min done")
        return state


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Both in [-1, 1]."""
    mse = F.mse_loss(a.float(), b.float()).item() / 4
    return 10 * math.log10(1 / max(mse, 1e-12))


# ----------------------------------------------------------------------------- VAE
def vae_batch(rng: np.random.Generator, n: int, crop: int | None = 32, tf: int = 2, pairs: int = 1) -> torch.Tensor:
    """(n, 3, 1 + pairs*tf, crop, crop): runs of frame pairs (plus a lead frame), cropped near objects; crop None:
    whole frames (n, 3, 1 + pairs*tf, H, W), one size for the batch, decoded with the frame's own borders."""
    out, full = [], SIZES[rng.integers(len(SIZES))] if crop is None else None   # crops keep their old stream
    for _ in range(n):
        w, h = full or SIZES[rng.integers(len(SIZES))]
        fps = float(rng.choice([6, 8, 12, 24]))
        scene = world.sample_scene(rng, (w, h))
        start = int(rng.integers(0, int(3 * fps)))
        clip = world.render(scene, w, h, fps, start + pairs * tf + 1)[start:]   # (1 + pairs*tf, H, W, 3)
        if crop is None:
            out.append(to_tensor(clip))
            continue
        obj = scene.objects[rng.integers(len(scene.objects))]
        cx, cy = world.centres(obj, w, h, np.array([start / fps]))[0]
        if rng.random() < 0.8:   # mostly around an object: edges are what is hard to reconstruct
            x0 = int(np.clip(cx - crop / 2 + rng.integers(-crop // 3, crop // 3 + 1), 0, w - crop))
            y0 = int(np.clip(cy - crop / 2 + rng.integers(-crop // 3, crop // 3 + 1), 0, h - crop))
        else:
            x0, y0 = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
        out.append(to_tensor(clip[:, y0:y0 + crop, x0:x0 + crop]))
    return torch.stack(out)


def held_out(model: VideoAE, n: int, seed: int, fps: float, frames: int) -> list[tuple]:
    """n held-out rendered clips (all three aspects) through encode/decode ->
    [(scene, x (1, 3, N, H, W), reconstruction (1, 3, N, H, W))], both in [-1, 1]."""
    rng = np.random.default_rng(seed)
    dev = next(model.parameters()).device
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(n):
            w, h = SIZES[i % 3]
            scene = world.sample_scene(rng, (w, h))
            x = to_tensor(world.render(scene, w, h, fps, frames))[None].to(dev)
            out.append((scene, x, model.decode_raw(model.encode_raw(x)).clamp(-1, 1)))
    model.train()
    return out


def eval_vae(model: VideoAE, n: int = 12, seed: int = 10_000) -> float:
    """Mean PSNR (dB) of full held-out clips (25 frames at 12 fps) through encode/decode."""
    return float(np.mean([psnr(y, x) for _, x, y in held_out(model, n, seed, 12, 25)]))


def eval_vae_motion(model: VideoAE, n: int = 24, seed: int = 30_000) -> float:
    """Share of held-out clips (17 frames at 8 fps, the eval's rate) whose objects the judge still
    sees moving as captioned after encode/decode: a decoder that repeats each latent's frame
    halves the motion and fails this while its PSNR stays high."""
    from engine import judge
    ok = 0
    for scene, _, y in held_out(model, n, seed, 8, 17):
        clip = ((y[0].permute(1, 2, 3, 0) + 1) * 127.5).round().byte().cpu().numpy()     # (N, H, W, 3)
        ok += all(o["motion"] for o in judge.match(clip, world.caption(scene), fps=8)["objects"])
    return ok / n


def train_vae(args):
    torch.manual_seed(args.seed)
    run = Run(args.run, args.minutes, args.max_steps)
    dev = torch.device(args.device)
    model = VideoAE(VAEConfig()).to(dev)
    if args.decoder_only:   # the latent space (and so the DiT trained on it) stays exactly as it is
        model.encoder.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    state = run.resume()
    if state:
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"])
    elif args.init:  # continue from shipped weights (a new machine has no checkpoint)
        from engine.backends.toy.backend import load_vae
        model.load_state_dict(widen_decoder(load_vae(args.init).state_dict(), model.cfg))
        run.log(f"initialised from {args.init}")
    rng = np.random.default_rng(args.seed + run.step)
    run.log(f"vae: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, budget {args.minutes} min")
    t_last, ema = time.time(), None
    while run.progress < 1.0:
        # enough pairs that a middle latent sees its whole decoder context
        x = vae_batch(rng, args.batch, None if args.full_frames else 32,
                      pairs=2 * model.cfg.decoder_context + 1).to(dev)                 # (B, 3, N, 32, 32) or whole frames
        for g in opt.param_groups:
            g["lr"] = run.lr(args.lr)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            z = model.encode_raw(x)
            z_in = z + 0.05 * torch.randn_like(z) * z.detach().std()              # a decoder robust to imperfect latents
            y = model.decode_raw(z_in).float()
        loss = F.l1_loss(y, x) + F.mse_loss(y, x) + 1e-4 * z.float().pow(2).mean()
        if args.motion_weight:
            # frame-to-frame change, so the two frames of a latent differ as the input's do
            dy, dx = y.diff(dim=2), x.diff(dim=2)
            loss = loss + args.motion_weight * (F.l1_loss(dy, dx) + F.mse_loss(dy, dx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run.step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if run.step % 50 == 0:
            rate = 50 * args.batch / (time.time() - t_last)
            t_last = time.time()
            run.log(f"vae step {run.step} loss {ema:.4f} lr {run.lr(args.lr):.2e} {rate:.0f} pairs/s "
                    f"{100 * run.progress:.0f}%")
        if run.step % 500 == 0:
            run.log(f"vae step {run.step} eval PSNR {eval_vae(model):.2f} dB, motion kept {eval_vae_motion(model):.2f}")
        run.save({"model": model.state_dict(), "opt": opt.state_dict()})
    run.save({"model": model.state_dict(), "opt": opt.state_dict()}, force=True)
    if not args.decoder_only:
        calibrate_vae(model)
    score, motion = eval_vae(model, n=30), eval_vae_motion(model, n=60)
    run.log(f"vae done: step {run.step}, held-out PSNR {score:.2f} dB, motion kept {motion:.2f}")
    if args.export:
        export(model, args.out or ASSETS / "toy_vae.safetensors", {"config": json.dumps(VAEConfig().__dict__),
                                                      "psnr_db": f"{score:.2f}", "motion_kept": f"{motion:.2f}",
                                                      "steps": str(run.step)})



def calibrate_vae(model: VideoAE, n: int = 48, seed: int = 20_000):
    """Per-channel shift/scale of the latents over rendered clips, so the DiT sees unit variance."""
    rng = np.random.default_rng(seed)
    dev = next(model.parameters()).device
    zs = []
    with torch.no_grad():
        for i in range(n):
            w, h = SIZES[i % 3]
            x = to_tensor(world.render(world.sample_scene(rng, (w, h)), w, h, 12, 9))[None].to(dev)
            zs.append(model.encode_raw(x).transpose(0, 1).flatten(1))          # (C, F*h*w)
    z = torch.cat(zs, dim=1)
    model.shift.copy_(z.mean(1))
    model.scale.copy_(z.std(1).clamp_min(1e-3))


def export(model: torch.nn.Module, path: Path, meta: dict):
    from engine.backends.toy.backend import write_weights
    path = Path(path)
    write_weights(model.state_dict(), meta, path)
    print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


# ----------------------------------------------------------------------------- CLI
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m engine.backends.toy.train")
    ap.add_argument("stage", choices=["vae", "dit"])
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--max-steps", type=int, default=0,
                    help="budget in steps instead of minutes (lr decays over it): equal budgets on a noisy CPU")
    ap.add_argument("--probe-every", type=int, default=250, help="dit: steps between probe lines in the log (0 = never)")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="dit: pause at this step, resumable, without changing the schedule --max-steps sets")
    ap.add_argument("--keep-every", type=int, default=0, help="dit: keep the EMA weights every N steps (0 = never)")
    ap.add_argument("--run", default=None, help="checkpoint folder (default runs/<stage>)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (helps the DiT's matmuls; measured 15x slower for the VAE's convs on a CPU)")
    ap.add_argument("--export", action="store_true", help="write fp16 weights into assets/ when done")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-every", type=float, default=15, help="minutes between judge checks of samples (dit)")
    ap.add_argument("--vae", default=None, help="VAE weights for the dit stage (default assets/toy_vae.safetensors)")
    ap.add_argument("--init", default=None, help="start from these weights (e.g. assets/toy_dit.safetensors, or dit: a kept runs/*/ckpt_*.pt) "
                         "when --run has no checkpoint")
    ap.add_argument("--object-weight", type=float, default=4.0,
                    help="dit: extra loss weight on latent cells holding an object (0 = plain mean)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="vae: train the decoder alone (with --init), so the latents the DiT learned stay valid")
    ap.add_argument("--full-frames", action="store_true",
                    help="vae: whole frames, not 32 px crops (the decoder learns the frame's real borders)")
    ap.add_argument("--motion-weight", type=float, default=0.0,
                    help="vae: extra loss on frame-to-frame change (0 = off)")
    ap.add_argument("--fresh", type=int, default=2, help="dit: clips rendered and encoded per step into the pool")
    ap.add_argument("--t-shift", type=float, default=1.0, help="dit: >1 moves training timesteps toward high noise")
    ap.add_argument("--i2v", type=float, default=0.0,
                    help="dit: share of samples forced to image-to-video (first latent frame clean)")
    ap.add_argument("--simple-until", type=int, default=0,
                    help="dit: curriculum; until this step, one object under one caption, plain generation "
                         "(then --i2v), before storyboards, two objects and remix patterns (0 = off)")
    ap.add_argument("--simple-share", type=float, default=0.0,
                    help="dit: after --simple-until, this share of batches stays simple (a gentler curriculum)")
    ap.add_argument("--keyframe-share", type=float, default=0.0,
                    help="dit: share of batches made of single frames (one latent frame), the first pass of "
                         "keyframe-first sampling")
    ap.add_argument("--two-share", type=float, default=0.0,
                    help="dit: share of fresh clips made to hold two objects (0 = the world's own mix, about half)")
    ap.add_argument("--cut-keys", type=float, default=0.0,
                    help="dit: share of storyboard samples whose cuts to a new scene are held still and kept clean, "
                         "as the sampler gives them their own keyframe (0 = off; on, every cut falls on a latent frame)")
    ap.add_argument("--keyframe-batch", type=int, default=4, help="dit: a keyframe batch holds this many times --batch")
    ap.add_argument("--contrast", default=None,
                    help="dit: caption attributes (engine.probe's: colour, shape, size, background) whose swap must cost "
                         "loss at noise >= 0.5 (samples under one caption), joined by commas (a hinge on the probe's ratio)")
    ap.add_argument("--contrast-weight", type=float, default=1.0, help="dit: weight of the --contrast hinge")
    ap.add_argument("--contrast-margin", type=float, default=0.2,
                    help="dit: the --contrast hinge asks swapped / true loss >= 1 + this")
    ap.add_argument("--pixel-weight", type=float, default=0.0,
                    help="dit: weight of a loss on the denoised estimate in pixels, through the frozen decoder (0 = none)")
    ap.add_argument("--pixel-below", type=float, default=0.5, help="dit: --pixel-weight applies at noise levels up to this")
    ap.add_argument("--lora", type=int, default=0,
                    help="dit: train a LoRA of this rank on the block linears of --init, the base frozen (0 = every weight)")
    ap.add_argument("--bucket", default=None,
                    help="dit: train on these buckets only, WxHxFRAMES@FPS joined by commas (e.g. 64x64x17@8, "
                         "the probe's), not every size and length")
    ap.add_argument("--pooled-text", action="store_true",
                    help="dit: add a gated, pooled text vector per latent frame to the adaLN conditioning")
    ap.add_argument("--layout", action="store_true",
                    help="dit: keyframes are told where their objects start (engine/backends/toy/layout.py), a blob each")
    ap.add_argument("--grounded", action="store_true",
                    help="dit: the layout says each blob's colour and shape too (a channel each; implies --layout)")
    ap.add_argument("--silhouette", action="store_true",
                    help="dit: and each object's share of each latent cell, its outline (a channel each; implies --grounded)")
    ap.add_argument("--layout-drop", type=float, default=0.15,
                    help="dit: share of keyframes trained with an empty layout, as a prompt the planner cannot place")
    ap.add_argument("--layout-lr", type=float, default=1.0,
                    help="dit: the layout input's learning rate as a multiple of --lr (it starts from zero)")
    ap.add_argument("--init-lora", default=None,
                    help="dit: with --lora, start the LoRA from this shipped one (e.g. assets/toy_dit_key.safetensors)")
    ap.add_argument("--patch", type=int, default=0, help="dit: latent cells per token side (0 = the recipe's)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda when a GPU is lent (same command, same outputs)")
    ap.add_argument("--out", default=None, help="where --export writes (default assets/)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.run = args.run or f"runs/{args.stage}"
    if args.stage == "vae":
        args.batch, args.lr = args.batch or 16, args.lr or 2e-3
        train_vae(args)
    else:
        from engine.backends.toy.train_dit import train_dit
        args.batch, args.lr = args.batch or 8, args.lr or 1e-3
        train_dit(args)


if __name__ == "__main__":
    main()
