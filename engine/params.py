"""Every user-facing parameter's range, declared once.

The same `Param` feeds timeline validation, the CLI's argparse options and (later) the
studio's Gradio controls, so a range can never disagree between the three.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


class InputError(ValueError):
    """Bad input from a person: a one-line message that names the field and what is allowed."""


OUT_OF_MEMORY = ("the video needs more memory than this machine has; make it shorter, smaller or with fewer cards, "
                 "or on a real model pick a memory setting that offloads (--memory model, group or group+fp8)")


def out_of_memory(e: BaseException) -> bool:
    """MemoryError, or torch's allocation failure (a RuntimeError; OutOfMemoryError on a GPU), told by its words."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        w in text for w in ("out of memory", "can't allocate memory", "not enough memory")))


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    help: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple | None = None
    kind: type = float

    def check(self, value, field: str | None = None):
        """Return `value` converted to this parameter's kind, or raise InputError naming `field`."""
        field = field or self.name
        if self.choices is not None:
            if value not in self.choices:
                allowed = ", ".join(str(c) for c in self.choices)
                raise InputError(f"{field}: {value!r} is not allowed; choose one of {allowed}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{field}: expected a number, got {_show(value)}")
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise InputError(f"{field}: must be a finite number, got {_show(value)}")
        if self.kind is int and float(value) != int(value):
            raise InputError(f"{field}: expected a whole number, got {value!r}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise InputError(f"{field}: {_show(value)} is out of range; allowed {self.min:g} to {self.max:g}")
        return self.kind(value)


# Short side limits follow what the backends accept after snapping; durations are capped
# at 10 minutes because nothing on a laptop renders more in one go.
PARAMS: dict[str, Param] = {p.name: p for p in [
    Param("duration_s", 4.0, "clip length in seconds", min=0.1, max=600.0, step=0.1),
    Param("time_s", 0.0, "a moment in seconds", min=0.0, max=36000.0, step=0.05),
    Param("fps", 12.0, "frames per second", min=1.0, max=60.0, step=1.0),
    Param("aspect", "16:9", "frame shape: 16:9, 1:1, 9:16 or W:H", kind=str),
    Param("resolution", 64, "short side in pixels (snapped to what the backend accepts)", min=16, max=2160, step=8, kind=int),
    Param("seed", 0, "random seed", min=0, max=2**32 - 1, step=1, kind=int),
    Param("variations", 1, "how many videos to make at once", min=1, max=8, step=1, kind=int),
    Param("fit", "crop", "how media are fitted to the frame", choices=("crop", "pad", "stretch"), kind=str),
    Param("crossfade_s", 0.0, "soft edge of text cards, in seconds", min=0.0, max=10.0, step=0.1),
    Param("strength", 1.0, "how much a card is kept: 1 as is, 0 ignored", min=0.0, max=1.0, step=0.05),
    Param("steps", 20, "denoising steps", min=1, max=200, step=1, kind=int),
    Param("guidance", 4.0, "classifier-free guidance scale (1 = off)", min=1.0, max=20.0, step=0.5),
    Param("shift", 0.0, "schedule shift (0 = the backend's own choice for the grid)", min=0.0, max=20.0, step=0.5),
    Param("solver", "euler", "sampler", choices=("euler", "heun"), kind=str),
    Param("amount", 0.5, "how much a remix changes the clip: 0 none, 1 all", min=0.0, max=1.0, step=0.05),
    Param("bridge_s", 1.0, "length of the generated loop bridge in seconds", min=0.1, max=60.0, step=0.1),
    Param("extend_s", 2.0, "seconds to add", min=0.1, max=600.0, step=0.1),
    Param("direction", "forward", "extend after the clip or before it", choices=("forward", "backward"), kind=str),
    Param("context_s", 1.0, "seconds of the source clip the model sees when extending or looping", min=0.1, max=30.0, step=0.1),
    Param("audio", False, "keep the sound the model makes with the video in the mp4 (LTX-2 makes sound; the "
          "other models make none)", choices=(False, True), kind=bool),
    Param("lora_scale", 1.0, "how strongly a preset's LoRA applies (0 = not at all)", min=-2.0, max=2.0, step=0.05),
    Param("cache", "none", "diffusers' cache hook on a real model's transformer (faster, a little different)",
          choices=("none", "first-block", "taylorseer"), kind=str),
]}


def _show(value) -> str:
    """repr, cut short: an error message stays one readable line."""
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def check(name: str, value, field: str | None = None):
    """Validate `value` against the declared parameter `name`."""
    return PARAMS[name].check(value, field)


@dataclass(frozen=True)
class Limit:
    """How much one request to the studio (page or API) may ask of the machine. The CLI is not held to
    these: its user owns the machine. Shown in the API schema and checked before anything is parsed
    that could cost time or memory."""
    name: str
    max: float
    unit: str
    help: str

    def check(self, amount: float, field: str) -> None:
        if amount > self.max:
            raise InputError(f"{field}: {amount:g} {self.unit} asked, more than this server allows "
                             f"({self.max:g} {self.unit}: {self.help})")


# A minute of video is far past what the embedded model makes well and what a real model makes in one go
# on one GPU; the counts are ten times what a person draws or writes by hand.
LIMITS: dict[str, Limit] = {lim.name: lim for lim in [
    Limit("seconds", 60, "s", "the most seconds of video one request may make"),
    Limit("cards", 64, "cards", "the most cards in one storyboard"),
    Limit("curve_points", 256, "points", "the most points in one drawn curve"),
    Limit("prompt_chars", 2000, "characters", "the longest prompt"),
    Limit("json_kb", 1024, "KB", "the largest JSON request body (uploads have their own cap)"),
    Limit("memory_gb", 8, "GB", "the most memory one video may need, by the backend's estimate"),
]}
