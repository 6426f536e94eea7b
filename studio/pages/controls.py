"""Typed numbers and messages in words: the page's own checks, so a value out of range is refused with a
sentence before anything is queued.

Gradio's sliders clamp a typed value silently when the box loses focus (999 in Duration became a 20 s job),
and its Number shows 0 for an empty value; so every number a person types (lengths, moments, steps, guidance,
strength, amount) is a plain Number with no Gradio bounds, and `Bound.check` refuses what is out of range,
naming the field as the page labels it."""
from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from engine.params import PARAMS, InputError


@dataclass(frozen=True)
class Bound:
    """A number a person types: the declared parameter (its step and range), narrowed for the page."""
    param: str
    label: str
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    whole: bool = False    # steps: a whole number


    @property
    def range(self) -> tuple[float, float]:
        p = PARAMS[self.param]
        return (p.min if self.lo is None else max(p.min, self.lo)), (p.max if self.hi is None else min(p.max, self.hi))

    def _u(self, v: float) -> str:
        return f"{v:g} {self.unit}".strip()

    def number(self, value=None, label: str | None = None, **kw) -> gr.Number:
        lo, hi = self.range
        return gr.Number(value=PARAMS[self.param].default if value is None else value, step=PARAMS[self.param].step,
                         label=label or (f"{self.label} ({self.unit})" if self.unit else self.label),
                         info=f"{self._u(lo)} to {self._u(hi)}", **kw)

    def check(self, value) -> float:
        """The value as a float, or InputError in words: "Duration must be between 0.1 s and 20 s, not 999 s"."""
        lo, hi = self.range
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{self.label}: give a number from {self._u(lo)} to {self._u(hi)}") from None
        if not lo <= v <= hi:
            raise InputError(f"{self.label} must be between {self._u(lo)} and {self._u(hi)}, not {self._u(v)}")
        if self.whole and v != int(v):
            raise InputError(f"{self.label} must be a whole number from {self._u(lo)} to {self._u(hi)}, not {v:g}")
        return v


DURATION = Bound("duration_s", "Duration", hi=20, unit="s")
FPS = Bound("fps", "Frame rate", hi=30, unit="fps")
STORY_LENGTH = Bound("duration_s", "Storyboard length", hi=20, unit="s")
CARD_START = Bound("time_s", "Card start", hi=20, unit="s")
CARD_END = Bound("time_s", "Card end", hi=20, unit="s")
CARD_AT = Bound("time_s", "Image moment", hi=20, unit="s")
BRIDGE = Bound("bridge_s", "Bridge", hi=8, unit="s")
CONTEXT = Bound("context_s", "Context", hi=4, unit="s")
TRIM_START = Bound("time_s", "Trim start", hi=60, unit="s")
TRIM_END = Bound("time_s", "Trim end", hi=60, unit="s")
LOOP_IN = Bound("time_s", "Loop from", hi=60, unit="s")
LOOP_OUT = Bound("time_s", "Loop to", hi=60, unit="s")
EXTEND = Bound("extend_s", "Seconds to add", hi=20, unit="s")
STEPS = Bound("steps", "Steps", hi=100, whole=True)
GUIDANCE = Bound("guidance", "Guidance")
STRENGTH = Bound("strength", "Strength")
AMOUNT = Bound("amount", "Custom amount")



def chosen(choice, typed, named: dict, bound: Bound, field: str) -> float:
    """A named value (Subtle / Mild / Strong, Short / Normal / Long) or, for "Custom", the typed one, checked."""
    if choice == "Custom":
        return bound.check(typed)
    if choice not in named:
        raise InputError(f"{field}: choose one of {', '.join(named)} or Custom")
    return named[choice]


# ----------------------------------------------------------------------------- engine messages, in words
# The engine names fields by path ("cards[0].end_s: ...") for the API and the CLI; the page says the same in words.
_CARD = r"cards\[(\d+)\]"
_WORDS = [
    (rf"^{_CARD}\.end_s: ([\d.e+-]+) s is past the end of the timeline \(([\d.e+-]+) s\)",
     lambda m: f"Card {_n(m[1])} ends at {_s(m[2])}, after the storyboard's end ({_s(m[3])})"),
    (rf"^{_CARD}\.at_s: ([\d.e+-]+) s is past the end of the timeline \(([\d.e+-]+) s\)",
     lambda m: f"Card {_n(m[1])} is at {_s(m[2])}, after the storyboard's end ({_s(m[3])})"),
    (rf"^{_CARD}\.end_s: must be after start_s \(([\d.e+-]+) s\), got ([\d.e+-]+)",
     lambda m: f"Card {_n(m[1])} must end after it starts ({_s(m[2])}); it ends at {_s(m[3])}"),
    (rf"^{_CARD}\.start_s: text cards (\d+) and (\d+) overlap \(([^)]*)\); (.*)",
     lambda m: f"Text cards {_n(m[2])} and {_n(m[3])} overlap ({m[4]}): {m[5]}"),
    (rf"^{_CARD}(?:\.(\w+))?: (.*)", lambda m: f"Card {_n(m[1])}{_field(m[2])}: {m[3]}"),
    (r"^(\w+): (.*)", lambda m: f"{_field(m[1]).strip(' ()').capitalize() or m[1]}: {m[2]}"),
]
FIELD_WORDS = {"duration_s": "duration", "fps": "frame rate", "path": "media", "text": "text", "strength": "strength",
               "start_s": "start", "end_s": "end", "at_s": "moment", "source_in_s": "source start",
               "source_out_s": "source end", "seed": "seed", "steps": "steps", "guidance": "guidance",
               "storyboard": "storyboard", "cards": "cards", "card": "card", "video": "video", "media": "media",
               "prompt": "prompt", "job": "job", "amount": "amount", "bridge_s": "bridge", "context_s": "context",
               "extend_s": "seconds to add", "trim": "trim", "section": "loop section", "a": "video A", "b": "video B",
               "curve": "curve"}


def _n(i: str) -> int:
    return int(i) + 1   # people count cards from 1


def _s(v: str) -> str:
    return f"{float(v):g} s"


def _field(name: str | None) -> str:
    return f" ({FIELD_WORDS.get(name, name.replace('_', ' '))})" if name else ""


def in_words(message: str) -> str:
    """An engine message ("cards[0].end_s: 4.0 s is past the end of the timeline (2.0 s)") as the page says it
    ("Card 1 ends at 4 s, after the storyboard's end (2 s)"); a message already in words is kept."""
    line = str(message).splitlines()[0] if str(message) else ""
    for pattern, say in _WORDS:
        m = re.match(pattern, line)
        if m:
            return say(m)
    return line


def said_as_typed(note: gr.Markdown, fields: list[tuple[gr.Number, Bound]]) -> None:
    """As numbers are typed, `note` says the first one out of range, in words, and clears when all are in range:
    the same sentence the button would say, before it is pressed."""
    def said(*values) -> str:
        for (_, bound), v in zip(fields, values):
            try:
                bound.check(v)
            except InputError as e:
                return f"⚠ {e}"
        return ""
    boxes = [box for box, _ in fields]
    for box in boxes:
        for ev in (box.input, box.change):
            ev(said, boxes, note, show_progress="hidden", queue=False)
