"""`cinepatch`: every engine operation as a verb.

Bad input exits with code 2 and one line on stderr naming the field; no traceback, no
partial output file, never an overwrite without --overwrite.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.params import OUT_OF_MEMORY, PARAMS, InputError, out_of_memory


# ----------------------------------------------------------------------------- options
def _opt(p: argparse.ArgumentParser, flag: str, name: str, **kw):
    """An option whose type, default and help come from the declared parameter."""
    prm = PARAMS[name]
    rng = f" [{prm.min:g}..{prm.max:g}]" if prm.min is not None else ""
    if prm.choices:
        kw.setdefault("choices", prm.choices)
    p.add_argument(flag, dest=name, type=prm.kind if prm.kind in (int, float) else str,
                   default=kw.pop("default", None), help=f"{prm.help}{rng}", **kw)


def _timeline_opts(p, duration=True):
    _opt(p, "--aspect", "aspect")
    _opt(p, "--resolution", "resolution")
    if duration:
        _opt(p, "--duration", "duration_s")
    _opt(p, "--fps", "fps")
    _opt(p, "--seed", "seed")
    _opt(p, "--variations", "variations")
    p.add_argument("--negative-prompt", default=None, help="what the video should not show")
    p.add_argument("--preset", default=None, help="a preset from presets/ (style, negative prompt, sampling defaults)")


def _sampling_opts(p):
    p.add_argument("--backend", default=None, help="toy (default, when its weights are installed), reference, ltx")
    p.add_argument("--model", default=None, help="a real model's local folder in diffusers' layout (ltx)")
    p.add_argument("--memory", default=None, help="a real model's memory setting: auto, none, model or group, "
                   "with +fp8 +tiling +slicing (docs/real-models.md)")
    _opt(p, "--steps", "steps")
    _opt(p, "--guidance", "guidance")
    _opt(p, "--shift", "shift")
    _opt(p, "--solver", "solver")
    p.add_argument("--audio", action="store_true", default=None, help=PARAMS["audio"].help)


def _out_opts(p):
    p.add_argument("--out", required=True, help="output .mp4 (or .gif, or a folder/ for PNG frames)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="cinepatch", description="A local video studio: storyboards, remix, blend, loop, extend, re-cut.")
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    p = sub.add_parser("generate", help="render a storyboard .json (or a sidecar, to make a video again)")
    p.add_argument("storyboard")
    _sampling_opts(p); _out_opts(p)
    _opt(p, "--seed", "seed"); _opt(p, "--variations", "variations")

    p = sub.add_parser("t2v", help="text to video")
    p.add_argument("prompt")
    _timeline_opts(p); _sampling_opts(p); _out_opts(p)

    p = sub.add_parser("i2v", help="image to video")
    p.add_argument("image"); p.add_argument("--prompt", default="")
    p.add_argument("--at", dest="at_s", type=float, default=0.0, help="moment of the image in seconds")
    _timeline_opts(p); _sampling_opts(p); _out_opts(p)

    p = sub.add_parser("remix", help="change a video with a prompt")
    p.add_argument("video"); p.add_argument("--prompt", default="")
    _opt(p, "--amount", "amount", default=PARAMS["amount"].default)
    _timeline_opts(p, duration=False); _sampling_opts(p); _out_opts(p)

    p = sub.add_parser("blend", help="blend two videos through a curve")
    p.add_argument("a"); p.add_argument("b")
    p.add_argument("--curve", default="0:0,1:1", help="time_fraction:mix points, mix 0 = A, 1 = B, e.g. 0:0,0.4:0,0.6:1,1:1")
    p.add_argument("--repaint", default=None, help="noise curve time_fraction:level (default peaks where mix = 0.5)")
    p.add_argument("--prompt-a", default=""); p.add_argument("--prompt-b", default="")
    _timeline_opts(p); _sampling_opts(p); _out_opts(p)

    p = sub.add_parser("loop", help="make a clip loop seamlessly")
    p.add_argument("video"); p.add_argument("--prompt", default="")
    _opt(p, "--bridge", "bridge_s", default=PARAMS["bridge_s"].default)
    _opt(p, "--context", "context_s", default=PARAMS["context_s"].default)
    p.add_argument("--section", default=None, help="IN:OUT in seconds: loop only that part of the clip")
    _timeline_opts(p, duration=False); _sampling_opts(p); _out_opts(p)

    p = sub.add_parser("extend", help="continue a clip forward or lead into it backward")
    p.add_argument("video"); p.add_argument("--prompt", default="")
    _opt(p, "--seconds", "extend_s", default=PARAMS["extend_s"].default)
    _opt(p, "--direction", "direction", default=PARAMS["direction"].default)
    _opt(p, "--context", "context_s", default=PARAMS["context_s"].default)
    _timeline_opts(p, duration=False); _sampling_opts(p); _out_opts(p)

    p = sub.add_parser("recut", help="trim / change fps without the model")
    p.add_argument("video")
    p.add_argument("--trim", default=None, help="START:END in seconds")
    _opt(p, "--fps", "fps")
    _out_opts(p)

    p = sub.add_parser("plan", help="print what the engine will do with a storyboard")
    p.add_argument("storyboard")
    p.add_argument("--backend", default=None)

    p = sub.add_parser("judge", help="read a clip of the toy world and say what matches a prompt (JSON)")
    p.add_argument("clip"); p.add_argument("--prompt", default="")

    p = sub.add_parser("eval", help="judge the embedded model on the fixed eval set and print the table")
    p.add_argument("--backend", default=None)
    p.add_argument("--quick", action="store_true", help="a small slice (minutes, not an hour)")
    _opt(p, "--steps", "steps"); _opt(p, "--guidance", "guidance"); _opt(p, "--shift", "shift"); _opt(p, "--solver", "solver")

    p = sub.add_parser("probe", help="does the embedded model read its prompt? caption-swap loss ratios (1.00 = ignores)")
    p.add_argument("--weights", default=None, help="DiT weights: .safetensors or a runs/*/ckpt*.pt (default assets/)")
    p.add_argument("--vae", default=None, help="VAE weights (default assets/toy_vae.safetensors)")
    p.add_argument("--clips", type=int, default=12, help="rendered clips in the probe set [1..64]")
    p.add_argument("--seed", type=int, default=0, help="the probe's noise")

    p = sub.add_parser("demo", help="render the example storyboard and say where it is")
    p.add_argument("--backend", default=None)
    p.add_argument("--out", default=None, help="default out/demo.mp4 (replaced on every run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _plugin_verbs(sub)
    return ap


def _plugin_verbs(sub):
    """Verbs other packages add (the studio's `studio`), found by entry point so the engine never imports them."""
    from importlib.metadata import entry_points
    for ep in entry_points(group="cinepatch.verbs"):
        try:
            ep.load()(sub)
        except ImportError as e:  # a half-installed extra must not break the engine's own verbs
            print(f"cinepatch: note: verb {ep.name!r} is unavailable ({e})", file=sys.stderr)


# ----------------------------------------------------------------------------- verbs
def _timeline_kw(a) -> dict:
    keys = ("aspect", "resolution", "fps", "seed", "variations", "preset")
    kw = {k: getattr(a, k) for k in keys if getattr(a, k, None) is not None}
    if getattr(a, "negative_prompt", None):
        kw["negative_prompt"] = a.negative_prompt
    return kw


def _duration(a) -> float:
    return PARAMS["duration_s"].default if a.duration_s is None else a.duration_s


def _settings(a, tl=None, base: dict | None = None):
    """Preset defaults < a sidecar's settings < flags given on the command line."""
    from engine.api import Settings, resolve_settings
    s = dict(base or {})
    s.update({k: getattr(a, k) for k in ("steps", "guidance", "shift", "solver", "audio")
              if getattr(a, k, None) is not None})
    return resolve_settings(tl, s) if tl is not None else Settings(**s)


def _backend(a):
    """(name, backend) from --backend / --model (a verb without those options gets the default)."""
    from engine.backends.registry import default_backend, load_backend
    name, model = a.backend, getattr(a, "model", None)
    if not name and default_backend() == "reference":
        print("cinepatch: note: assets/ has no embedded-model weights; using the reference backend "
              "(noise-like pictures). Build them with `python -m engine.backends.toy.train`.", file=sys.stderr)
    name = name or default_backend()
    if model and name in ("toy", "reference"):
        raise InputError(f"model: --model is for real-model backends (ltx); the {name!r} backend has its own weights")
    memory = getattr(a, "memory", None)
    if memory and name in ("toy", "reference"):
        raise InputError(f"memory: --memory is for real-model backends; the {name!r} backend runs as it is")
    return name, load_backend(name, **({"model": model} if model else {}), **({"memory": memory} if memory else {}))


def _render(a, tl, settings=None):
    from engine.api import needs_model, render
    from engine.timeline import fresh_seed
    name, backend = _backend(a) if needs_model(tl) else ("none", None)
    bar = _progress() if sys.stderr.isatty() else None
    tl = fresh_seed(tl)  # no --seed: a new video each run; the seed is said here and kept in the sidecar
    outs = render(tl, backend, settings or _settings(a, tl), a.out, overwrite=a.overwrite, backend_name=name, callback=bar)
    if backend is not None:
        print(f"cinepatch: seed {tl.seed} (--seed {tl.seed} makes the same video again)", file=sys.stderr)
    for o in outs:
        print(o)


def _progress():
    def cb(d):
        n = d["steps"]
        done = int(30 * d["step"] / n)
        print(f"\r[{'#' * done}{'.' * (30 - done)}] step {d['step']}/{n}", end="\n" if d["step"] == n else "",
              file=sys.stderr, flush=True)
    return cb


def cmd_generate(a):
    from engine.api import timeline_from_sidecar
    from engine.timeline import read_json, validate
    path = Path(a.storyboard)
    tl, meta = timeline_from_sidecar(read_json(path), str(path.parent.resolve()))
    if a.seed is not None or a.variations is not None:
        tl = validate(tl.replace(seed=tl.seed if a.seed is None else a.seed,
                                 variations=tl.variations if a.variations is None else a.variations))
    if Path(a.out).with_suffix(".json").resolve() == path.resolve():
        raise InputError(f"out: its sidecar {Path(a.out).with_suffix('.json')} would replace the storyboard; "
                         f"choose another --out")
    a.backend = a.backend or meta.get("backend")
    _render(a, tl, _settings(a, tl, meta.get("settings")))


def cmd_t2v(a):
    from engine import ops
    _render(a, ops.t2v(a.prompt, _duration(a), **_timeline_kw(a)))


def cmd_i2v(a):
    from engine import ops
    _render(a, ops.i2v(a.image, a.prompt, a.at_s, _duration(a), **_timeline_kw(a)))


def cmd_remix(a):
    from engine import ops
    _render(a, ops.remix(a.video, a.prompt, a.amount, **_timeline_kw(a)))


def cmd_blend(a):
    from engine import ops
    _render(a, ops.blend(a.a, a.b, a.curve, a.prompt_a, a.prompt_b, a.repaint, a.duration_s, **_timeline_kw(a)))


def cmd_loop(a):
    from engine import ops
    try:
        section = tuple(float(v) for v in a.section.split(":")) if a.section else None
    except ValueError:
        section = ()
    if section is not None and len(section) != 2:
        raise InputError(f"section: {a.section!r} is not IN:OUT in seconds, e.g. 0.5:2")
    _render(a, ops.loop(a.video, a.bridge_s, a.context_s, a.prompt, section, **_timeline_kw(a)))


def cmd_extend(a):
    from engine import ops
    _render(a, ops.extend(a.video, a.extend_s, a.direction, a.prompt, a.context_s, **_timeline_kw(a)))


def cmd_recut(a):
    from engine import ops
    trim = None
    if a.trim:
        try:
            trim = tuple(float(v) for v in a.trim.split(":"))
            assert len(trim) == 2
        except (ValueError, AssertionError):
            raise InputError(f"trim: {a.trim!r} is not START:END in seconds, e.g. 0.5:2") from None
    a.backend = None
    _render(a, ops.recut(a.video, trim, a.fps))


def cmd_plan(a):
    from engine.plan import compile
    from engine.timeline import load
    tl = load(a.storyboard)
    name, backend = _backend(a)
    print(f"backend {name}")
    print(compile(tl, backend).explain())


def cmd_judge(a):
    from engine import judge
    from engine.video_io import probe, read_video
    info = probe(a.clip, field="clip")
    clip = read_video(a.clip, field="clip")
    report = judge.match(clip, a.prompt, fps=info.fps) if a.prompt else judge.analyze(clip, fps=info.fps).to_dict()
    print(json.dumps(report, indent=2))


def cmd_eval(a):
    from engine.evaluate import evaluate, table
    name, backend = _backend(a)
    results = evaluate(backend, _settings(a), quick=a.quick, log=lambda m: print(m, file=sys.stderr))
    print(f"backend {name}, {'quick slice' if a.quick else 'full eval set'}")
    print(table(results))


def cmd_probe(a):
    from engine.backends.toy.backend import ASSETS, I2V_NAME, KEY_NAME
    from engine.probe import probe_weights, table
    if not 1 <= a.clips <= 64:
        raise InputError(f"clips: {a.clips} is outside [1..64]")
    weights = a.weights or ASSETS / "toy_dit.safetensors"
    print(f"probe of {weights}: loss(swapped caption) / loss(true caption), {a.clips} clips; 1.00 = the word is ignored")
    print(table(probe_weights(weights, a.vae, a.clips, a.seed)))
    # beside the DiT (since session 25 the image-to-video model itself) the shipped model may have an image-to-video
    # LoRA, and has a keyframe model (a LoRA of the DiT, or a model of its own)
    for path, role in ((ASSETS / I2V_NAME, "image-to-video model"), (ASSETS / KEY_NAME, "keyframe model")):
        if a.weights is None and path.exists():
            from engine.backends.toy.backend import load_dit, load_model
            print(f"probe of the {role} ({path}, beside {weights})")
            print(table(probe_weights(load_model(load_dit(weights), path), a.vae, a.clips, a.seed)))


def cmd_demo(a):
    from engine.api import Settings, render
    from engine.timeline import load
    root = Path(__file__).resolve().parent.parent
    tl = load(root / "examples" / "story.json")
    out = Path(a.out or root / "out" / "demo.mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    name, backend = _backend(a)
    print(f"rendering examples/story.json on the {name!r} backend ...", file=sys.stderr)
    render(tl, backend, Settings(steps=12), out, overwrite=a.overwrite or a.out is None, backend_name=name,
           callback=_progress() if sys.stderr.isatty() else None)
    print(f"wrote {out} (and {out.with_suffix('.json')}, the settings that made it)")


VERBS = {"generate": cmd_generate, "t2v": cmd_t2v, "i2v": cmd_i2v, "remix": cmd_remix, "blend": cmd_blend,
         "loop": cmd_loop, "extend": cmd_extend, "recut": cmd_recut, "plan": cmd_plan, "judge": cmd_judge,
         "eval": cmd_eval, "probe": cmd_probe, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    # Arguments that are not valid UTF-8 become replacement characters, not a crash deep inside.
    argv = [a.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for a in (sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(argv)
    try:
        (VERBS.get(args.verb) or args.run)(args)
    except InputError as e:
        print(f"cinepatch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cinepatch: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk or a vanished folder: not the input's fault, but still one line
        print(f"cinepatch: error: {e.strerror or e} ({e.filename or ''})", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        print(f"cinepatch: error: {OUT_OF_MEMORY}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
