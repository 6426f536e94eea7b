"""Presets: TOML files in presets/ applied by one small function (Fooocus' habit).

A preset adds style text to every prompt, sets the negative prompt when the timeline has
none, and gives default sampling settings that explicit settings override. Its ranges are
the declared parameters' (engine/params.py); an optional `lora` path is for real backends.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from engine.params import InputError, check

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
SETTINGS_KEYS = ("steps", "guidance", "shift", "solver")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    style: str = ""
    negative_prompt: str = ""
    settings: tuple[tuple[str, object], ...] = ()   # (name, value) pairs, each checked against its Param
    lora: str | None = None


def load(name: str, folder: Path = PRESETS_DIR) -> Preset:
    """The preset `name` from `folder`; InputError naming what exists when it is unknown or malformed."""
    path = folder / f"{name}.toml"
    if not name or "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise InputError(f"preset: unknown preset {name!r}; available: {', '.join(available(folder)) or 'none'}")
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"preset: {path} is not valid TOML ({e})") from None
    known = {"name", "description", "style", "negative_prompt", "lora", *SETTINGS_KEYS}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"preset: {path.name} has unknown field {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    settings = tuple((k, check(k, d[k], f"preset {name}.{k}")) for k in SETTINGS_KEYS if k in d)
    return Preset(name, str(d.get("description", "")), str(d.get("style", "")), str(d.get("negative_prompt", "")),
                  settings, d.get("lora"))


def available(folder: Path = PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml"))


def apply(preset: Preset, timeline):
    """The timeline with the preset's style on every prompt and its negative prompt (if none was given)."""
    style = (lambda t: f"{t}, {preset.style}" if t.strip() and preset.style else t)
    cards = [replace(c, text=style(c.text)) if c.kind == "text" else c for c in timeline.cards]
    return replace(timeline, prompt=style(timeline.prompt), cards=cards,
                   negative_prompt=timeline.negative_prompt or preset.negative_prompt)
