"""The Storyboard's rules that need no browser: fitting cards to a new length and the file Save offers."""
from __future__ import annotations

import json
from pathlib import Path

from engine.params import InputError

EPS = 1e-6


def fit_to_length(story: dict, duration_s: float) -> tuple[dict, list[str]]:
    """The storyboard at a new length -> (story, what changed, in words). A card that runs past the new end is
    trimmed to it (a video card keeps its speed); one that would start at or after the end refuses the change,
    so shortening never leaves a card the engine would refuse, nor drops one unasked."""
    cards, notes = [], []
    for i, c in enumerate(story["cards"]):
        start = c.get("at_s", c.get("start_s", 0.0))
        if start > duration_s + EPS or (c["kind"] != "image" and start >= duration_s - EPS):
            raise InputError(f"Card {i + 1} starts at {start:g} s, at or after the new end ({duration_s:g} s): "
                             "move or delete it first")
        if c["kind"] != "image" and c["end_s"] > duration_s + EPS:
            c = dict(c, end_s=float(duration_s))
            if c.get("source_out_s") is not None:  # the source span shrinks with the card: same speed
                old = story["cards"][i]
                rate = (old["source_out_s"] - old.get("source_in_s", 0.0)) / (old["end_s"] - old["start_s"])
                c["source_out_s"] = old.get("source_in_s", 0.0) + rate * (duration_s - old["start_s"])
            notes.append(f"Card {i + 1} now ends at {duration_s:g} s")
        cards.append(c)
    return dict(story, duration_s=float(duration_s), cards=cards), notes


def export(library, story: dict) -> Path:
    """The storyboard as the engine's .json, media as absolute paths (so `cinepatch generate` renders it too),
    written to exports/storyboard.json."""
    from engine.files import atomic_write_text
    cards = [dict(c, path=library.resolve(f"cards[{i}].path", c["path"])) if c.get("path") else c
             for i, c in enumerate(story["cards"])]
    out = library.home / "exports" / "storyboard.json"
    atomic_write_text(out, json.dumps({"version": 1, **story, "cards": cards}, indent=2) + "\n", overwrite=True)
    return out
