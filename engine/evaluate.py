"""`cinepatch eval`: the embedded model judged on a fixed eval set (engine/eval_set.json).

Every number is read off generated clips by engine/judge.py (no learned model):
colour / shape / motion of one-object prompts, both objects right in two-object prompts,
storyboard segments matching their own card, image-card PSNR and continuation, loop seam
ratio, blend-curve fidelity. `--quick` runs a small slice.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import judge, ops
from engine.api import Settings, generate
from engine.timeline import TextCard, Timeline

EVAL_SET = Path(__file__).with_name("eval_set.json")
SIZES = {"16:9": (112, 64), "1:1": (64, 64), "9:16": (64, 112)}  # (width, height) at a 64 px short side
TARGETS = {"background": None, "colour": 0.90, "shape": 0.80, "motion": 0.80, "two_objects": 0.60, "storyboard": 0.80,
           "image_psnr_db": 30.0, "image_continues": None, "image_motion": None, "loop_seam": 1.5, "blend_error": 0.15,
           "remix_keeps_0.3": 0.80, "remix_follows_0.9": 0.80,
           "teleports": 0.03, "split_frames": 0.05, "presence": 0.95}
LOWER_IS_BETTER = frozenset({"loop_seam", "blend_error", "teleports", "split_frames"})


def build_eval_set(seed: int = 123_456) -> dict:
    """The fixed eval set: canonical captions of held-out scenes (seeds far from training's)."""
    from engine.backends.toy import world
    rng = np.random.default_rng(seed)
    names = list(SIZES)

    def scene(k, n_objects):
        while True:
            s = world.sample_scene(rng, SIZES[names[k % 3]])
            if len(s.objects) == n_objects:
                return s

    out = {"fps": 8, "duration_s": 2.0, "resolution": 64, "single": [], "double": [], "storyboards": [],
           "images": [], "loops": [], "blends": []}
    for k in range(48):
        out["single"].append({"prompt": world.caption(scene(k, 1)), "aspect": names[k % 3], "seed": k})
    for k in range(24):
        out["double"].append({"prompt": world.caption(scene(k, 2)), "aspect": names[k % 3], "seed": k})
    for k in range(12):
        n = 2 + k % 2
        out["storyboards"].append({"cards": [world.caption(scene(k, 1)) for _ in range(n)], "aspect": names[k % 3],
                                   "seed": k})
    for key, count in (("images", 12), ("loops", 8)):
        for k in range(count):
            s = scene(k, 1)
            out[key].append({"scene": _scene_dict(s), "caption": world.caption(s), "aspect": names[k % 3], "seed": k})
    for k in range(8):
        a, b = scene(k, 1), scene(k + 1, 1)
        out["blends"].append({"a": _scene_dict(a), "b": _scene_dict(b), "prompt_a": world.caption(a),
                              "prompt_b": world.caption(b), "curve": "0:0,0.35:0,0.65:1,1:1", "aspect": names[k % 3],
                              "seed": k})
    return out


def _scene_dict(s) -> dict:
    return {"background": s.background, "objects": [o.__dict__ for o in s.objects]}


def _scene(d):
    from engine.backends.toy import world
    return world.SceneSpec(d["background"], tuple(world.ObjectSpec(**o) for o in d["objects"]))


@dataclass
class Coherence:
    """Prompted objects' coherence over generated clips: teleports per step, split frames per
    frame found, presence per frame asked (an object never found is absent in every frame)."""
    teleports: int = 0
    steps: int = 0
    split: int = 0
    found: int = 0
    asked: int = 0

    def add(self, match: dict, n_frames: int):
        for o in match["objects"]:
            c = o["coherence"]
            self.teleports += c["teleports"]; self.steps += c["steps"]
            self.split += c["split_frames"]; self.found += c["frames_found"]
            self.asked += n_frames

    def rates(self) -> dict:
        div = lambda a, b: a / b if b else float("nan")   # noqa: E731
        return {"teleports": div(self.teleports, self.steps), "split_frames": div(self.split, self.found),
                "presence": div(self.found, self.asked)}


@dataclass
class Tally:
    ok: int = 0
    n: int = 0

    def add(self, flag):
        if flag is not None:
            self.ok += bool(flag)
            self.n += 1

    @property
    def rate(self) -> float:
        return self.ok / self.n if self.n else float("nan")


def evaluate(backend, settings: Settings | None = None, quick: bool = False, workdir: str | Path = "/tmp",
             eval_set: dict | None = None, log=print) -> dict:
    """Run the eval set (or a slice of it) -> {metric: value}."""
    settings = settings or Settings()
    es = eval_set or json.loads(EVAL_SET.read_text())
    take = (lambda xs, n: xs[:n]) if quick else (lambda xs, n: xs)
    fps, dur = es["fps"], es["duration_s"]
    common = dict(fps=fps, resolution=es["resolution"])
    out = {}
    # 1. one- and two-object prompts
    out.update(evaluate_prompts(backend, settings, es, 6 if quick else None, 3 if quick else None))
    log(f"prompts: {out}")
    # 2. storyboards: each segment's frames against its own card
    seg = Tally()
    for item in take(es["storyboards"], 2):
        cards, n = item["cards"], len(item["cards"])
        span = dur * n / 2                                  # 1 s per card
        tl = Timeline(duration_s=span, aspect=item["aspect"], seed=item["seed"], **common,
                      cards=[TextCard(span * i / n, span * (i + 1) / n, c) for i, c in enumerate(cards)])
        clip = generate(tl, backend, settings)[0]
        for i, c in enumerate(cards):
            a, b = round(len(clip) * i / n), round(len(clip) * (i + 1) / n)
            seg.add(judge.match(clip[a:b], c, fps=fps)["all_ok"])
    out["storyboard"] = seg.rate
    out.update(_media_metrics(es, backend, settings, take, Path(workdir), log))
    return out


def evaluate_prompts(backend, settings: Settings, es: dict, n_single: int | None = None,
                     n_double: int | None = None) -> dict:
    """Background of every prompt; colour / shape / motion of one-object prompts; both objects right in two;
    coherence (teleports, split frames, presence) of every prompted object."""
    fps, dur, res = es["fps"], es["duration_s"], es["resolution"]
    tallies = {k: Tally() for k in ("background", "colour", "shape", "motion", "two_objects")}
    coherence = Coherence()
    for group, n in (("single", n_single), ("double", n_double)):
        for item in es[group][:n]:
            tl = ops.t2v(item["prompt"], dur, aspect=item["aspect"], seed=item["seed"], fps=fps, resolution=res)
            clip = generate(tl, backend, settings)[0]
            m = judge.match(clip, item["prompt"], fps=fps)
            coherence.add(m, len(clip))
            objs = m["objects"]
            tallies["background"].add(m["background"]["ok"])
            if group == "single":
                for key, attr in (("colour", "color"), ("shape", "shape"), ("motion", "motion")):
                    tallies[key].add(all(o[attr] for o in objs))
            else:
                tallies["two_objects"].add(all(o["color"] and o["shape"] and o["motion"] for o in objs))
    return {**{k: t.rate for k, t in tallies.items()}, **coherence.rates()}


def _media_metrics(es, backend, settings, take, workdir: Path, log) -> dict:
    from engine.backends.toy import world
    from engine.video_io import write_video
    fps, dur, res = es["fps"], es["duration_s"], es["resolution"]
    n = int(round(dur * fps))
    images = image_metrics(es, backend, settings, take(es["images"], 2), workdir)
    seams, sources = [], []
    for k, item in enumerate(take(es["loops"], 2)):
        w, h = SIZES[item["aspect"]]
        src = world.render(_scene(item["scene"]), w, h, fps, n)
        path = write_video(workdir / f"eval_loop_{k}.mp4", src, fps, overwrite=True)
        sources.append((item, path))
        clip = generate(ops.loop(str(path), bridge_s=1.0, context_s=0.5, resolution=res, seed=item["seed"]),
                        backend, settings)[0]
        seams.append(judge.loop_seam_ratio(clip))
    errors = []
    for k, item in enumerate(take(es["blends"], 2)):
        w, h = SIZES[item["aspect"]]
        a, b = (world.render(_scene(item[x]), w, h, fps, n) for x in ("a", "b"))
        pa = write_video(workdir / f"eval_a_{k}.mp4", a, fps, overwrite=True)
        pb = write_video(workdir / f"eval_b_{k}.mp4", b, fps, overwrite=True)
        tl = ops.blend(str(pa), str(pb), item["curve"], item["prompt_a"], item["prompt_b"], resolution=res,
                       seed=item["seed"])
        clip = generate(tl, backend, settings)[0]
        mix = tl.cards[1].weight(np.arange(len(clip)) / max(len(clip) - 1, 1))
        errors.append(judge.blend_fidelity(clip, a[:len(clip)], b[:len(clip)], mix)[1])
    keep, follow = _remix_metrics(es, backend, settings, sources)
    res_ = {**images, "loop_seam": float(np.median(seams)), "blend_error": float(np.mean(errors)),
            "remix_keeps_0.3": keep, "remix_follows_0.9": follow}
    log(f"media: {res_}")
    return res_


def image_metrics(es, backend, settings, items: list, workdir: Path) -> dict:
    """Image-to-video from each item's rendered first frame: its PSNR kept, whether the image's objects go on
    (colour and shape), and whether they move as the caption says (the direction only the caption gives)."""
    from engine.backends.toy import world
    from engine.video_io import write_image
    fps, dur, res = es["fps"], es["duration_s"], es["resolution"]
    psnrs, cont, moves = [], Tally(), Tally()
    for k, item in enumerate(items):
        w, h = SIZES[item["aspect"]]
        frame = world.render(_scene(item["scene"]), w, h, fps, 1)[0]
        path = write_image(workdir / f"eval_img_{k}.png", frame, overwrite=True)
        tl = ops.i2v(str(path), item["caption"], duration_s=dur, fps=fps, resolution=res, aspect=item["aspect"],
                     seed=item["seed"])
        clip = generate(tl, backend, settings)[0]
        psnrs.append(judge.psnr(clip[0], frame))
        seen = judge.analyze(clip[1:], fps=fps).objects
        objs = item["scene"]["objects"]
        cont.add({(o["color"], o["shape"]) for o in objs} <= {(o.color, o.shape) for o in seen})
        moves.add({(o["color"], o["shape"], o["motion"]) for o in objs} <= {(o.color, o.shape, o.motion) for o in seen})
    return {"image_psnr_db": float(np.mean(psnrs)), "image_continues": cont.rate, "image_motion": moves.rate}


def _remix_metrics(es, backend, settings, sources) -> tuple[float, float]:
    """Remix each loop-set source clip toward a one-object prompt: at 0.3 its objects and motion stay
    (judged against the source scene), at 0.9 the clip matches the new prompt."""
    fps, res = es["fps"], es["resolution"]
    keep, follow = Tally(), Tally()
    for k, (item, src) in enumerate(sources):
        prompt = es["single"][k]["prompt"]
        for amount in (0.3, 0.9):
            tl = ops.remix(str(src), prompt, amount, resolution=res, seed=item["seed"])
            clip = generate(tl, backend, settings)[0]
            if amount < 0.5:
                want = {(o["color"], o["shape"], o["motion"]) for o in item["scene"]["objects"]}
                keep.add(want <= {(o.color, o.shape, o.motion) for o in judge.analyze(clip, fps=fps).objects})
            else:
                follow.add(judge.match(clip, prompt, fps=fps)["all_ok"])
    return keep.rate, follow.rate


def table(results: dict) -> str:
    """The eval table with targets."""
    lines = [f"{'metric':<18} {'value':>8} {'target':>10}  ok"]
    for k, v in results.items():
        t = TARGETS.get(k)
        if t is None:
            ok, ts = "", "-"
        elif k in LOWER_IS_BETTER:
            ok, ts = ("yes" if v <= t else "no"), f"<= {t}"
        else:
            ok, ts = ("yes" if v >= t else "no"), f">= {t}"
        lines.append(f"{k:<18} {v:>8.3f} {ts:>10}  {ok}")
    return "\n".join(lines)


def small_eval(weights, n_single: int = 12, n_double: int = 6, n_images: int = 0, workdir: str | Path = "/tmp",
               keyframe_first: bool = False, i2v=None, keyframe_frames: int = 0) -> dict:
    """The prompt rows and coherence of a weights file or training checkpoint, at default settings, and with
    n_images the image-to-video rows: what the ablations are compared on (minutes; the full eval takes an hour).
    keyframe_first: sample text-to-video keyframe first (sampler.sample_keyframe_first); i2v: a second weights
    file or checkpoint for the image-to-video pass (keyframe first, as the shipped models sample);
    keyframe_frames: latent frames the keyframe pass draws (0 = the whole clip)."""
    from engine.backends.toy.backend import MiniLM, ToyBackend, load_vae
    from engine.probe import load_weights
    backend = ToyBackend(load_vae(), load_weights(weights), MiniLM(), keyframe_first=keyframe_first,
                         i2v=load_weights(i2v) if i2v else None, keyframe_frames=keyframe_frames)
    es = json.loads(EVAL_SET.read_text())
    out = evaluate_prompts(backend, Settings(), es, n_single, n_double)
    if n_images:
        out.update(image_metrics(es, backend, Settings(), es["images"][:n_images], Path(workdir)))
    return out


def main(argv=None):
    """`python -m engine.evaluate`: rewrite the eval set; with --weights, the small eval of those weights."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m engine.evaluate")
    ap.add_argument("--weights", default=None, help="a .safetensors or runs/*/ckpt*.pt: run the small eval on it")
    ap.add_argument("--single", type=int, default=12, help="one-object prompts")
    ap.add_argument("--double", type=int, default=6, help="two-object prompts")
    ap.add_argument("--images", type=int, default=0, help="image-to-video items (the eval set has 12)")
    ap.add_argument("--keyframe-first", action="store_true",
                    help="sample text-to-video keyframe first (what weights shipped with keyframe_first do)")
    ap.add_argument("--i2v", default=None, help="weights or checkpoint for the image-to-video pass (keyframe first: "
                                                "the keyframe by --weights, the rest by these)")
    ap.add_argument("--keyframe-frames", type=int, default=0,
                    help="keyframe first: latent frames the keyframe pass draws (0 = the whole clip)")
    args = ap.parse_args(argv)
    if args.weights is None:
        EVAL_SET.write_text(json.dumps(build_eval_set(), indent=1) + "\n")
        print(f"wrote {EVAL_SET}")
        return
    print(f"small eval of {args.weights}: {args.single} one-object and {args.double} two-object prompts, "
          f"{args.images} images" + (", keyframe first" if args.keyframe_first or args.i2v else "")
          + (f", image-to-video by {args.i2v}" if args.i2v else "")
          + (f", keyframe pass over {args.keyframe_frames} latent frame(s)" if args.keyframe_frames else ""))
    print(table(small_eval(args.weights, args.single, args.double, args.images, keyframe_first=args.keyframe_first,
                           i2v=args.i2v, keyframe_frames=args.keyframe_frames)))


if __name__ == "__main__":
    main()
