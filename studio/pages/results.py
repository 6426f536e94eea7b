"""Result panels: what a finished job shows in its tab — its videos side by side, each with the seed it was
made with and a one-click "Reuse seed"."""
from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from engine.params import InputError

MAX_SHOWN = 4   # the most variations the page asks for


@dataclass
class Slot:
    video: gr.Video
    caption: gr.Markdown
    reuse: gr.Button   # "Reuse seed N": N into the tab's seed field


@dataclass
class Panel:
    tab: str
    slots: list[Slot]

    @property
    def outputs(self) -> list:
        return [c for s in self.slots for c in (s.video, s.caption, s.reuse)]


def panel(tab: str, prefix: str, n: int = 1, label: str = "Result", loop: bool = False) -> Panel:
    """n result slots in a row; the first is `#<prefix>-result`, the others `#<prefix>-result-<k>` (hidden until used)."""
    slots = []
    with gr.Row(elem_id=f"{prefix}-results", equal_height=False):
        for k in range(n):
            with gr.Column(min_width=160):
                sid = f"{prefix}-result" if k == 0 else f"{prefix}-result-{k}"
                video = gr.Video(label=label if n == 1 else f"{label} {k + 1}", autoplay=True, loop=loop,
                                 interactive=False, elem_id=sid, visible=k == 0)
                caption = gr.Markdown("", elem_id=f"{sid}-caption")
                reuse = gr.Button("Reuse seed", size="sm", visible=False, elem_id=f"{sid}-reuse")
            slots.append(Slot(video, caption, reuse))
    return Panel(tab, slots)


def caption(v: dict) -> str:
    """A result's caption: which video, and the seed that makes it again."""
    seed = f" · seed `{v['seed']}`" if v.get("seed") is not None else ""
    return f"**#{v['id']}** {v['label'][:60]}{seed}"


def panel_updates(videos: list[dict], n: int) -> list:
    """Updates for n slots showing `videos` (library rows), side by side; slots past them hidden (the first stays)."""
    out = []
    for k in range(n):
        if k < len(videos):
            v = videos[k]
            out += [gr.update(value=v["path"], visible=True), caption(v),
                    gr.update(value=f"Reuse seed {v['seed']}", visible=v.get("seed") is not None)]
        else:
            out += [gr.update(value=None, visible=k == 0), "", gr.update(visible=False)]
    return out


def unchanged(n: int) -> list:
    return [gr.update()] * (3 * n)


def seed_of(label: str) -> str:
    """The seed a "Reuse seed N" button carries, for the tab's seed field."""
    m = re.fullmatch(r"Reuse seed (\d+)", str(label or "").strip())
    if not m:
        raise InputError("seed: this result has no seed to reuse")
    return m.group(1)
