"""The Storyboard tab: cards on a timeline strip, the cards table, the plan the engine will follow, Save/Load.

Its rules need no browser (fitting cards to a new length, the file Save offers, the plan said in words); the
handlers are top-level functions of the studio and the values the page sends."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine.params import InputError
from studio import widgets
from studio.pages import controls as ctl
from studio.pages import results as results_mod
from studio.pages.common import ASPECTS, Page, bind, queued, sampling, sampling_controls, source_picker

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


# ----------------------------------------------------------------------------- what the page shows of it
DEFAULT = {"duration_s": 4.0, "fps": 8.0, "aspect": "16:9", "resolution": 64, "cards": []}
_CARD_NAME = re.compile(r"cards\[(\d+)\]")


def card_rows(story: dict) -> list[list]:
    """The cards table: number (from 1, as people count), kind, when, what, strength."""
    out = []
    for i, c in enumerate(story["cards"]):
        when = f"{c['at_s']:g} s" if c["kind"] == "image" else f"{c['start_s']:g}–{c['end_s']:g} s"
        out.append([i + 1, c["kind"], when, c.get("text") or results_mod.ref_name(c.get("path", "")),
                    c.get("strength", "")])
    return out


def card_name(story: dict, i: int) -> str:
    """'Card 2 “a blue box”', or 'Card 3 (image #4)': how the plan table names a card."""
    c = story["cards"][i] if 0 <= i < len(story["cards"]) else {}
    if c.get("kind") == "text":
        text = c.get("text", "")
        return f"Card {i + 1} “{text[:40]}{'…' if len(text) > 40 else ''}”"
    return f"Card {i + 1} ({c.get('kind', 'card')} {results_mod.ref_name(c.get('path', ''))})".replace(" )", ")")


def plan_in_words(rows: list[list], story: dict) -> list[list]:
    """The engine's plan rows with its field paths ("cards[0]", "global", "empty") said as the page names them."""
    def say(cell: str) -> str:
        cell = _CARD_NAME.sub(lambda m: card_name(story, int(m[1])), cell)
        cell = re.sub(r"\bglobal\b", "the prompt", cell)
        return re.sub(r"^empty\b", "nothing (the empty prompt)", cell)
    return [[*r[:4], say(str(r[4])), say(str(r[5]))] for r in rows]


def story_file(studio, s: dict) -> str | None:
    """The file Save .json offers, written with every change of the storyboard and sent in the same update:
    a download button sends the file it holds when clicked, so writing it on the click sent the state
    before the last change (finding 3)."""
    try:
        return str(export(studio.library, s))
    except InputError:  # a card's media deleted since: nothing to offer until it is replaced
        return None


def refresh(studio, s: dict, sel, backend=None) -> tuple:
    """(strip, cards table, plan table, note, Save's file) of a storyboard: one state, shown everywhere."""
    try:
        rows, msg = (plan_in_words(studio.plan_rows(s, backend), s) if s["cards"] else []), ""
    except InputError as e:
        rows, msg = [], f"Plan: {ctl.in_words(e)}"
    return studio.strip_value(s, sel), card_rows(s), rows, msg, story_file(studio, s)


def checked(studio, s: dict) -> dict:
    """The storyboard if the engine takes it; else InputError naming the card (said in words by the page)."""
    from engine.requests import build
    build("storyboard", {"storyboard": s}, studio.library.resolve)
    return s


def card_from_controls(studio, kind, text, start, end, at, strength, src, up) -> dict:
    if kind == "text":
        if not (text or "").strip():
            raise InputError("text: a text card needs some text")
        return {"kind": "text", "start_s": ctl.CARD_START.check(start), "end_s": ctl.CARD_END.check(end), "text": text}
    strength = ctl.STRENGTH.check(strength)   # what is typed is checked before an upload is taken
    ref = studio.source(src, up, "media")
    if kind == "image":
        return {"kind": "image", "at_s": ctl.CARD_AT.check(at), "path": ref, "strength": strength}
    return {"kind": "video", "start_s": ctl.CARD_START.check(start), "end_s": ctl.CARD_END.check(end), "path": ref,
            "strength": strength}


def with_video(studio, s: dict, ref: str) -> dict:
    """The storyboard with library video `ref` added as a video card from 0 s (Open in Storyboard)."""
    v = studio.library.video(int(ref[4:]))
    return dict(s, cards=[*s["cards"], {"kind": "video", "start_s": 0.0, "end_s": min(float(v["duration_s"]),
                                                                                     float(s["duration_s"])),
                                         "path": ref, "strength": 1.0}])


# ----------------------------------------------------------------------------- drops onto the strip (issue 21)
DROP_AT = ctl.Bound("time_s", "Drop time", hi=20, unit="s")


def picked(studio, src, up) -> dict:
    """The chip to drag onto the strip: the media picked in the Storyboard's source (an upload wins, as in Add)."""
    if not src and up is None:
        return {}
    ref = studio.source(src, up, "media")
    return {"ref": ref, "name": results_mod.ref_name(ref), "thumb": studio.thumb(ref)}


def uploaded_file(path) -> str:
    """A file dropped from the desktop, which the strip uploaded to Gradio's upload folder first. The value names
    it by a server path, so any path outside that folder is refused: the page cannot name other files."""
    from gradio.utils import get_upload_folder, is_in_or_equal
    if not isinstance(path, str) or not is_in_or_equal(path, get_upload_folder()) or not Path(path).is_file():
        raise InputError("Dropped file: it did not arrive; drop it again")
    return path


def dropped_card(studio, s: dict, drop) -> dict:
    """What was dropped on the strip -> its card: an image at the drop time; a clip from the drop time for its own
    length (to the storyboard's end, at its own speed). `drop`: {"at_s", "ref": "lib:<id>" | "upload:<name>"}
    (a Library clip, the picked media) or {"at_s", "file": a path in the upload folder} (from the desktop)."""
    from engine.video_io import probe
    if not isinstance(drop, dict):
        raise InputError("Drop: nothing usable was dropped; drop a Library clip, an image or a video")
    at, dur = DROP_AT.check(drop.get("at_s")), float(s["duration_s"])
    if drop.get("error") is not None:   # the upload of a desktop file failed in the browser
        raise InputError(f"Dropped file: it could not be uploaded ({str(drop['error'])[:200]})")
    if drop.get("file") is not None:
        ref = studio.import_upload(uploaded_file(drop["file"]), "Dropped file")
    elif isinstance(drop.get("ref"), str) and drop["ref"].startswith(("lib:", "upload:")):
        ref = drop["ref"]
    else:
        raise InputError("Drop: nothing usable was dropped; drop a Library clip, an image or a video")
    info = probe(studio.library.resolve("Dropped media", ref), field="Dropped media")
    if info.kind == "image":
        card = {"kind": "image", "at_s": min(at, dur), "path": ref, "strength": 1.0}
    elif at >= dur - EPS:
        raise InputError(f"A clip dropped at {at:g} s starts at the storyboard's end ({dur:g} s): drop it earlier")
    else:
        span = round(min(info.duration_s, dur - at), 3)
        card = {"kind": "video", "start_s": at, "end_s": round(at + span, 3), "path": ref, "source_in_s": 0.0,
                "source_out_s": span, "strength": 1.0}
    refuse_overlap(s, card)
    return card


def refuse_overlap(s: dict, card: dict) -> None:
    """A dropped card may not land on another card of its lane (an image on the same moment, a clip on a clip)."""
    for i, c in enumerate(s["cards"]):
        if c["kind"] != card["kind"]:
            continue
        name = card_name(s, i)
        if card["kind"] == "image" and abs(c["at_s"] - card["at_s"]) < EPS:
            raise InputError(f"{name} is already at {c['at_s']:g} s: the dropped image would overlap it; "
                             "drop it at another moment")
        if card["kind"] == "video" and c["start_s"] < card["end_s"] - EPS and card["start_s"] < c["end_s"] - EPS:
            raise InputError(f"The dropped clip ({card['start_s']:g}–{card['end_s']:g} s) would overlap {name} "
                             f"({c['start_s']:g}–{c['end_s']:g} s): drop it where the video lane is free")


# ----------------------------------------------------------------------------- handlers
def _selected(s: dict, sel) -> int:
    if sel is None or not (0 <= int(sel) < len(s["cards"])):
        raise InputError("card: select a card in the timeline first")
    return int(sel)


def on_add(studio, s, sel, dur, asp, kind, text, start, end, at, strength, src, up, backend):
    s = fit_to_length(dict(s, aspect=asp), ctl.STORY_LENGTH.check(dur))[0]  # a length typed, not yet left
    s = checked(studio, dict(s, cards=[*s["cards"], card_from_controls(studio, kind, text, start, end, at, strength,
                                                                       src, up)]))
    sel = len(s["cards"]) - 1
    return s, sel, *refresh(studio, s, sel, backend)


def on_update(studio, s, sel, dur, asp, kind, text, start, end, at, strength, src, up, backend):
    i = _selected(s, sel)
    s = fit_to_length(dict(s, aspect=asp), ctl.STORY_LENGTH.check(dur))[0]
    cards = list(s["cards"])
    cards[i] = card_from_controls(studio, kind, text, start, end, at, strength, src, up)
    s = checked(studio, dict(s, cards=cards))
    return s, i, *refresh(studio, s, i, backend)


def on_delete(studio, s, sel, dur, asp, backend):
    i = _selected(s, sel)
    s = dict(s, cards=[c for k, c in enumerate(s["cards"]) if k != i])
    return s, None, *refresh(studio, s, None, backend)


def on_settings(studio, s, sel, dur, asp, backend):
    """A new length fits the cards to it at once (trimmed, said in a note); a length that would leave a card
    outside, or one out of range, is refused and the field goes back to the storyboard's length."""
    try:
        s, notes = fit_to_length(s, ctl.STORY_LENGTH.check(dur))
    except InputError as e:
        gr.Warning(ctl.in_words(e))
        return s, sel, *refresh(studio, s, sel, backend), s["duration_s"]
    s = dict(s, aspect=asp)
    strip_, rows, plan_rows, msg, save = refresh(studio, s, sel, backend)
    return s, sel, strip_, rows, plan_rows, "; ".join(notes) or msg, save, s["duration_s"]


def on_strip(studio, v, s, backend):
    """A click selects a card (its fields go to the controls); a drag moves it; a drop adds a card. The strip is
    sent back too: after a refused drag or drop it shows the cards where they are, not where they were dropped
    (finding 5)."""
    if not isinstance(v, dict):
        return (gr.update(),) * 13
    sel, cards = v.get("selected"), v.get("cards", s["cards"])
    if "drop" in v:
        try:
            s = checked(studio, dict(s, cards=[*s["cards"], dropped_card(studio, s, v["drop"])]))
            sel = len(s["cards"]) - 1
        except InputError as e:
            gr.Warning(ctl.in_words(e))
    elif isinstance(cards, list) and len(cards) == len(s["cards"]):
        moved = [dict(old, **{k: float(new[k]) for k in ("start_s", "end_s", "at_s") if k in old and k in new})
                 for old, new in zip(s["cards"], cards)]
        try:
            s = checked(studio, dict(s, cards=moved))
        except InputError as e:
            gr.Warning(ctl.in_words(e))
    c = s["cards"][sel] if isinstance(sel, int) and 0 <= sel < len(s["cards"]) else None
    fields = [gr.update()] * 6
    if c:
        fields = [c["kind"], c.get("text", ""), c.get("start_s", 0.0), c.get("end_s", 0.0), c.get("at_s", 0.0),
                  c.get("strength", 1.0)]
    return s, sel, *refresh(studio, s, sel, backend), *fields


def on_load(studio, f, sel, backend):
    """A saved .json back in the editor; its media must be files of this studio's library."""
    from engine.timeline import read_json
    d = read_json(f)
    if not isinstance(d, dict):
        raise InputError("storyboard: expected a JSON object")
    d.pop("version", None)
    cards = d.get("cards") if isinstance(d.get("cards"), list) else []
    for i, c in enumerate(cards):  # files of this library come back as references; others are refused
        if isinstance(c, dict) and isinstance(c.get("path"), str) and not c["path"].startswith(("lib:", "upload:")):
            ref = studio.library.ref_for_path(c["path"])
            if ref is None:
                raise InputError(f"cards[{i}].path: {c['path'][:80]!r} is not in the studio's library; "
                                 "upload it and add the card again")
            cards[i] = dict(c, path=ref)
    s = checked(studio, {**DEFAULT, **d})
    return s, None, *refresh(studio, s, None, backend)


def on_generate(studio, s, steps, guidance, seed, backend):
    if not s["cards"]:
        raise InputError("cards: add at least one card to the storyboard")
    return queued(studio, "storyboard", "storyboard", {"storyboard": s, **sampling(steps, guidance, seed)}, backend)


# ----------------------------------------------------------------------------- the tab
@dataclass
class Storyboard:
    """What other tabs write to: the storyboard and everything shown of it (Open in Storyboard adds a card)."""
    state: gr.State
    shown: list          # [strip, cards table, plan table, note, Save's file]: refresh()'s outputs, in order
    save: gr.DownloadButton


def build(page: Page) -> Storyboard:
    studio = page.studio
    strip = widgets.timeline_strip(studio.strip_value(DEFAULT, None))
    chip = widgets.media_chip()   # the media picked below, right by the strip it is dragged onto
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                duration = ctl.STORY_LENGTH.number(4.0, elem_id="sb-duration")
                aspect = gr.Radio(ASPECTS, value="16:9", label="Aspect")
            kind = gr.Radio(["text", "image", "video"], value="text", label="Card", elem_id="card-kind")
            text = gr.Textbox(label="Text", elem_id="card-text")
            with gr.Row():
                start = ctl.CARD_START.number(0.0, "Start (s)", elem_id="card-start")
                end = ctl.CARD_END.number(2.0, "End (s)", elem_id="card-end")
                at = ctl.CARD_AT.number(0.0, "Moment (image, s)", elem_id="card-at")
            strength = ctl.STRENGTH.number(elem_id="card-strength")
            ctl.said_as_typed(gr.Markdown("", elem_id="card-note"), [(start, ctl.CARD_START), (end, ctl.CARD_END),
                                                                    (at, ctl.CARD_AT), (strength, ctl.STRENGTH)])
            src, up = source_picker(page, "Media", "card")
            with gr.Row():
                add = gr.Button("Add card", elem_id="card-add")
                update = gr.Button("Update selected", elem_id="card-update")
                delete = gr.Button("Delete selected", elem_id="card-delete")
            selected = gr.State(None)   # the index of the card picked on the strip (outlined there)
        with gr.Column(scale=3):
            cards_df = gr.Dataframe(headers=["#", "kind", "when", "what", "strength"], value=[], label="Cards",
                                    interactive=False, elem_id="cards-table")
            with gr.Row():
                save = gr.DownloadButton("Save .json", elem_id="sb-save")
                load = gr.UploadButton("Load .json", file_types=[".json"], elem_id="sb-load")
            steps, guidance, seed = sampling_controls("sb")
            go = gr.Button("Generate storyboard", variant="primary", elem_id="sb-generate")
            page.panels.append(results_mod.panel("storyboard", "sb"))   # by Generate, not below the plan
            plan_df = gr.Dataframe(headers=["latent frame", "pixel frames", "time (s)", "noise level", "injected",
                                            "text it sees"], value=[], label="Compiled plan", interactive=False,
                                   elem_id="plan-table")
    page.seeds["storyboard"] = seed
    story = gr.State(dict(DEFAULT))
    shown = [strip, cards_df, plan_df, page.note, save]
    outs, ins = [story, selected, *shown], [story, selected, duration, aspect]
    controls = [kind, text, start, end, at, strength, src, up]
    add.click(bind(on_add, studio), [*ins, *controls, page.backend], outs)
    update.click(bind(on_update, studio), [*ins, *controls, page.backend], outs)
    delete.click(bind(on_delete, studio), [*ins, page.backend], outs)
    for ev in (duration.submit, duration.blur, aspect.change, page.backend.change):  # the plan follows the model
        ev(bind(on_settings, studio), [*ins, page.backend], [*outs, duration])
    strip.input(bind(on_strip, studio), [strip, story, page.backend], [*outs, *controls[:6]])
    for ev in (src.change, up.change):
        ev(bind(picked, studio), [src, up], chip, show_progress="hidden")
    load.upload(bind(on_load, studio), [load, selected, page.backend], outs)
    go.click(bind(on_generate, studio), [story, steps, guidance, seed, page.backend], [page.watch, page.note])
    page.demo.load(bind(story_file, studio), story, save)
    return Storyboard(story, shown, save)
