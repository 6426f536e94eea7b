"""Presets: TOML files in presets/ applied by one small function (Fooocus' habit).

A preset adds style text to every prompt, sets the negative prompt when the timeline has
none, and gives default sampling settings that explicit settings override. Its ranges are
the declared parameters' (engine/params.py). A preset for a real backend may name LoRA files
with scales; the backend loads them for a job and unloads them after (`with_loras`):

    [[lora]]
    file = "loras/ink.safetensors"   # absolute, or relative to the preset's folder
    scale = 0.8                      # optional: 1.0
    expert = "transformer_2"         # optional, wan22-14b only: the low-noise expert (default transformer)
"""
from __future__ import annotations

import tomllib
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from engine.params import InputError, check

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
SETTINGS_KEYS = ("steps", "guidance", "shift", "solver")
LORA_KEYS = ("file", "scale", "expert")


@dataclass(frozen=True)
class Lora:
    """A LoRA file a preset applies: diffusers' load_lora_weights, then set_adapters with `scale`."""
    path: Path
    scale: float = 1.0
    expert: str = "transformer"  # wan22-14b's two experts: "transformer" (high noise) or "transformer_2"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    style: str = ""
    negative_prompt: str = ""
    settings: tuple[tuple[str, object], ...] = ()   # (name, value) pairs, each checked against its Param
    loras: tuple[Lora, ...] = ()
    cache: str = "none"   # diffusers' cache hook on a real backend's transformer for the job (params: cache)


def load(name: str, folder: Path | None = None) -> Preset:
    """The preset `name` from `folder` (presets/); InputError naming what exists when it is unknown or malformed."""
    folder = folder or PRESETS_DIR
    path = folder / f"{name}.toml"
    if not name or "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise InputError(f"preset: unknown preset {name!r}; available: {', '.join(available(folder)) or 'none'}")
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"preset: {path} is not valid TOML ({e})") from None
    known = {"name", "description", "style", "negative_prompt", "lora", "cache", *SETTINGS_KEYS}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"preset: {path.name} has unknown field {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    settings = tuple((k, check(k, d[k], f"preset {name}.{k}")) for k in SETTINGS_KEYS if k in d)
    return Preset(name, str(d.get("description", "")), str(d.get("style", "")), str(d.get("negative_prompt", "")),
                  settings, _loras(d.get("lora", []), path), check("cache", d.get("cache", "none"), f"preset {name}.cache"))


def _loras(entries, path: Path) -> tuple[Lora, ...]:
    """The preset's [[lora]] tables (or one file name) -> Lora entries whose files exist."""
    entries = [{"file": entries}] if isinstance(entries, str) else entries
    out = []
    for i, e in enumerate(entries if isinstance(entries, list) else [None]):
        field = f"preset {path.stem}.lora[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or set(e) - set(LORA_KEYS):
            raise InputError(f"{field}: expected a table with file (a path) and optional scale, expert; "
                             f"got {e!r:.60}")
        file = (path.parent / Path(e["file"]).expanduser()).resolve()
        if not file.is_file():
            raise InputError(f"{field}: LoRA file {file} does not exist")
        expert = e.get("expert", "transformer")
        if expert not in ("transformer", "transformer_2"):
            raise InputError(f"{field}.expert: {expert!r} is not allowed; choose one of transformer, transformer_2")
        out.append(Lora(file, check("lora_scale", e.get("scale", 1.0), f"{field}.scale"), expert))
    return tuple(out)


def available(folder: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (folder or PRESETS_DIR).glob("*.toml"))


def apply(preset: Preset, timeline):
    """The timeline with the preset's style on every prompt and its negative prompt (if none was given)."""
    style = (lambda t: f"{t}, {preset.style}" if t.strip() and preset.style else t)
    cards = [replace(c, text=style(c.text)) if c.kind == "text" else c for c in timeline.cards]
    return replace(timeline, prompt=style(timeline.prompt), cards=cards,
                   negative_prompt=timeline.negative_prompt or preset.negative_prompt)


@contextmanager
def on_backend(timeline, backend):
    """The backend with the timeline's preset's LoRAs and cache hook for one job (nothing without a preset).

    The cache is for the diffusers backends; on others a preset's cache is a no-op (its steps still apply)."""
    preset = load(timeline.preset) if timeline.preset else Preset("")
    if preset.loras and not hasattr(backend, "loras"):
        raise InputError(f"preset: {timeline.preset} names LoRA files; the {getattr(backend, 'name', '?')} backend "
                         f"takes none (LoRAs are for the diffusers backends: ltx, wan, wan22-5b, wan22-14b)")
    with (backend.loras(preset.loras) if preset.loras else nullcontext()), \
            (backend.cached(preset.cache) if hasattr(backend, "cached") else nullcontext()):
        yield
