"""Backends by name. Factories import lazily: no model is loaded at import."""
from __future__ import annotations

from engine.params import InputError


def _reference(**opts):
    from engine.backends.reference import ReferenceBackend
    return ReferenceBackend(**opts)


def _toy(**opts):
    from engine.backends.toy.backend import ToyBackend  # the embedded model (issue 3)
    return ToyBackend.load(**opts)


def _on_device(opts: dict) -> dict:
    """A real model runs on the GPU when there is one, in bfloat16 (the CPU: float32); $CINEPATCH_DEVICE or
    device= choose another. Its memory setting (memory=, $CINEPATCH_MEMORY) defaults to the backend's own."""
    import os

    import torch
    opts.setdefault("device", os.environ.get("CINEPATCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if torch.device(opts["device"]).type == "cuda":
        opts.setdefault("dtype", torch.bfloat16)
    return opts


def default_device() -> str:
    """Where a real model runs unless told otherwise: $CINEPATCH_DEVICE, else the GPU when there is one."""
    return _on_device({})["device"]


def _ltx(**opts):
    # issue 5: LTX-Video through diffusers, from a local folder (model=PATH or $CINEPATCH_LTX_MODEL)
    from engine.backends.ltx import LTXBackend
    return LTXBackend.load(**_on_device(opts))


def _ltx2(**opts):
    # issue 22: LTX-2 (video, and its audio when kept) through diffusers, from a local folder (model=PATH or
    # $CINEPATCH_LTX2_MODEL)
    from engine.backends.ltx2 import LTX2Backend
    return LTX2Backend.load(**_on_device(opts))


def _wan(variant: str):
    # issue 5: Wan 2.1 (t2v); issue 22: Wan 2.2 TI2V-5B and A14B. Each from its own local folder
    # (model=PATH, $CINEPATCH_WAN_MODEL, $CINEPATCH_WAN22_5B_MODEL, $CINEPATCH_WAN22_14B_MODEL)
    def factory(**opts):
        from engine.backends.wan import WanBackend
        return WanBackend.load(variant=variant, **_on_device(opts))
    return factory


def _standin(**opts):
    # issue 23: the reference backend with a fixed wait per step, for orchestration benchmarks; not in the page
    from engine.backends.standin import StandInBackend
    return StandInBackend(**opts)


FACTORIES = {"toy": _toy, "reference": _reference, "ltx": _ltx, "wan": _wan("wan"), "wan22-5b": _wan("wan22-5b"),
             "wan22-14b": _wan("wan22-14b"), "ltx2": _ltx2, "standin": _standin}
REAL = ("ltx", "wan", "wan22-5b", "wan22-14b", "ltx2")  # backends of diffusers models in a local folder
SOUND = ("ltx2",)   # backends that make sound with their frames (Settings.audio keeps it)
DEFAULT = "toy"


def default_backend() -> str:
    """"toy" when the embedded model's weights are in assets/; otherwise the reference backend."""
    from pathlib import Path
    assets = Path(__file__).resolve().parents[2] / "assets"
    if all((assets / f).exists() for f in ("toy_vae.safetensors", "toy_dit.safetensors")):
        return DEFAULT
    return "reference"


def available() -> list[str]:
    return list(FACTORIES)


def configured() -> list[str]:
    """Backends usable here now: the embedded one (or reference), then real models whose folder is set
    ($CINEPATCH_LTX_MODEL, $CINEPATCH_WAN_MODEL, $CINEPATCH_WAN22_5B_MODEL... or $CINEPATCH_MODELS/<name>)."""
    from pathlib import Path

    from engine.backends.diffusers_parts import default_model_path
    return [default_backend()] + [n for n in REAL if (p := default_model_path(n)) and Path(p).is_dir()]


def spec_of(name: str | None = None, **opts):
    """A backend's LatentSpec without loading its weights: the embedded model's is fixed, a real model's is
    read from its folder's configs. For what a page shows before anything runs (frame rules, plan tables)."""
    name = name or default_backend()
    if name == "toy":
        from engine.backends.toy.backend import toy_spec
        return toy_spec()
    if name == "ltx":
        from engine.backends.ltx import LTXBackend
        return LTXBackend.read_spec(**opts)
    if name == "ltx2":
        from engine.backends.ltx2 import LTX2Backend
        return LTX2Backend.read_spec(**opts)
    if name.startswith("wan"):
        from engine.backends.wan import WanBackend
        return WanBackend.read_spec(variant=name, **opts)
    return load_backend(name, **opts).spec  # reference: a few random weights, built in milliseconds


def load_backend(name: str | None = None, **opts):
    """A backend object by name; raises InputError for an unknown name."""
    name = name or default_backend()
    if name not in FACTORIES:
        raise InputError(f"backend: unknown backend {name!r}; available: {', '.join(FACTORIES)}")
    try:
        return FACTORIES[name](**opts)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("engine."):
            raise InputError(f"backend: {name!r} is not built into this version yet ({e.name} missing); "
                             f"use --backend reference") from None
        raise
