"""The Create tab: a prompt (and optionally an image or a video), its size, length and variations -> a video."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from engine.params import InputError
from studio.pages import controls as ctl
from studio.pages import results as results_mod
from studio.pages.common import (ASPECTS, BACKEND_FPS, BACKEND_RESOLUTIONS, MEDIA_TYPES, RESOLUTIONS, Page, Studio,
                                 bind, queued, sampling, sampling_controls)


@dataclass
class Create:
    prompt: gr.Textbox       # kept in the browser across a reload (app.py)


def on_generate(studio: Studio, prompt, media, aspect, resolution, duration, variations, preset, fps, steps, guidance,
                seed, backend, sound=False):
    req = {"prompt": prompt or "", "aspect": aspect, "resolution": int(resolution),
           "duration_s": ctl.DURATION.check(duration), "variations": int(variations), "fps": ctl.FPS.check(fps),
           **sampling(steps, guidance, seed)}
    if sound:
        req["audio"] = True
    if preset and preset != "(none)":
        req["preset"] = preset
    if media is not None:
        from engine.video_io import probe
        ref = studio.import_upload(media, "media")
        req["video" if probe(studio.library.resolve("media", ref)).kind == "video" else "image"] = ref
    return queued(studio, "create", "generate", req, backend)


def on_backend(name):
    """Sizes and frame rate follow the chosen model: the short sides and fps it was made for; Sound is offered
    only by a model that makes sound."""
    from engine.backends.registry import SOUND
    sizes = BACKEND_RESOLUTIONS.get(name, RESOLUTIONS)
    return gr.update(choices=sizes, value=sizes[0]), BACKEND_FPS.get(name, 8), gr.update(visible=name in SOUND,
                                                                                         value=False)


def on_length(studio: Studio, backend, duration, fps) -> str:
    """The frames note follows what is typed; a value out of range is said here, as it is typed."""
    try:
        return studio.frames_note(backend, ctl.DURATION.check(duration), ctl.FPS.check(fps))
    except InputError as e:
        return f"⚠ {ctl.in_words(e)}"


def preset_loras(studio: Studio, preset, backend) -> str:
    """Under the Preset dropdown: the preset's LoRAs (file, scale, expert), nothing when it has none; a LoRA the
    picked model cannot take says the engine's one line."""
    from engine import presets
    if not preset or preset == "(none)":
        return ""
    try:
        loras = presets.load(preset).loras
    except InputError as e:
        return f"⚠ {html.escape(str(e).splitlines()[0])}"
    if not loras:
        return ""
    rows = [f"LoRA **{html.escape(lo.path.name)}** · scale {lo.scale:g} · {lo.expert}" for lo in loras]
    problem = lora_problem(studio, preset, loras, backend)
    return "  \n".join(rows + ([f"⚠ {html.escape(problem)}"] if problem else []))


def lora_problem(studio: Studio, preset: str, loras, backend) -> str:
    """The engine's refusal of these LoRAs on the picked model, or "". A real model is checked once loaded (its
    modules' sizes are the check); it is not loaded just to say so."""
    from types import SimpleNamespace

    from engine import presets
    from engine.backends.diffusers_parts import check_lora
    from engine.backends.registry import REAL
    q = studio.queue(backend)
    model = q.loaded if q.backend_name in REAL else q.backend   # the embedded model loads in seconds
    if model is None:
        return ""
    try:
        if not hasattr(model, "loras"):   # the engine's refusal is raised on entering, before anything loads
            with presets.on_backend(SimpleNamespace(preset=preset), model):
                return ""
        pipe = model.pipeline_view()
        for lora in loras:
            check_lora(pipe, lora, model.name)
    except InputError as e:
        return str(e).splitlines()[0]
    return ""


def on_media(studio: Studio, media):
    """Refuse a bad file as soon as it arrives: a message, and the upload box is cleared."""
    if media is not None:
        try:
            studio.import_upload(media, "media")
        except InputError as e:
            gr.Warning(str(e).splitlines()[0])
            return None
    return gr.update()


def build(page: Page) -> Create:
    from engine import presets
    from engine.backends.registry import SOUND
    studio, fps0 = page.studio, BACKEND_FPS.get(page.studio.default, 8)
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="create-prompt",
                                placeholder="a small red circle moving left on a black background")
            media = gr.File(label="Image or video (optional)", file_types=MEDIA_TYPES, type="filepath",
                            elem_id="create-media", height=120)
            with gr.Row():
                aspect = gr.Radio(ASPECTS, value="16:9", label="Aspect")
                sizes = BACKEND_RESOLUTIONS.get(studio.default, RESOLUTIONS)
                resolution = gr.Dropdown(sizes, value=sizes[0], label="Resolution (short side, px)",
                                         elem_id="create-resolution")
                duration = ctl.DURATION.number(2.0, elem_id="create-duration")
            with gr.Row():
                variations = gr.Radio([1, 2, 4], value=1, label="Variations", elem_id="create-variations")
                preset = gr.Dropdown(["(none)", *presets.available()], value="(none)", label="Preset",
                                     elem_id="create-preset")
                fps = ctl.FPS.number(fps0, elem_id="create-fps")
            loras_md = gr.Markdown("", elem_id="create-preset-loras")
            frames_md = gr.Markdown(studio.frames_note(None, 2.0, fps0), elem_id="create-frames")
            steps, guidance, seed = sampling_controls("create")
            sound = gr.Checkbox(False, label="Sound", elem_id="create-sound", visible=studio.default in SOUND,
                                info="keep the sound the model makes with the video in the mp4")
            go = gr.Button("Generate", variant="primary", elem_id="create-generate")
        with gr.Column(scale=2):
            page.panels.append(results_mod.panel("create", "create", results_mod.MAX_SHOWN, loop=True))
    page.seeds["create"] = seed

    go.click(bind(on_generate, studio), [prompt, media, aspect, resolution, duration, variations, preset, fps, steps,
                                         guidance, seed, page.backend, sound], [page.watch, page.note])
    page.backend.change(on_backend, page.backend, [resolution, fps, sound])
    for ev in (duration.input, duration.change, fps.input, fps.change):
        ev(bind(on_length, studio), [page.backend, duration, fps], frames_md, show_progress="hidden")
    media.upload(bind(on_media, studio), media, media)
    for ev in (preset.change, page.backend.change):
        ev(bind(preset_loras, studio), [preset, page.backend], loras_md, show_progress="hidden")
    return Create(prompt)
