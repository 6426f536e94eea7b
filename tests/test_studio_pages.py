"""The page's rules that need no browser (studio/pages/): typed numbers, messages in words, fitting a storyboard
to a new length, the file Save offers, the seed field (issue 21, findings 1, 3, 4, 9)."""
import base64
import io
import json
import re
import shutil

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from engine.params import InputError
from studio.pages import controls as ctl
from studio.pages.storyboard import export, fit_to_length


@pytest.mark.parametrize("typed", [999, -5, 0, "", None, "abc"])
def test_a_typed_duration_out_of_range_is_refused_in_words(typed):
    with pytest.raises(InputError) as e:
        ctl.DURATION.check(typed)
    msg = str(e.value)
    assert msg.startswith("Duration") and "0.1 s" in msg and "20 s" in msg and "_s" not in msg


def test_a_typed_duration_in_range_is_taken():
    assert ctl.DURATION.check("3") == 3.0 and ctl.DURATION.check(20) == 20.0


@pytest.mark.parametrize("engine,words", [
    ("cards[0].end_s: 4.0 s is past the end of the timeline (2.0 s)", "Card 1 ends at 4 s, after the storyboard's end (2 s)"),
    ("cards[2].at_s: 5 s is past the end of the timeline (4.0 s)", "Card 3 is at 5 s, after the storyboard's end (4 s)"),
    ("cards[1].end_s: must be after start_s (1.5 s), got 1.0", "Card 2 must end after it starts (1.5 s); it ends at 1 s"),
    ("cards[1].start_s: text cards 0 and 1 overlap (1.5–2 s); move one, or give one a weight curve to blend them",
     "Text cards 1 and 2 overlap (1.5–2 s): move one, or give one a weight curve to blend them"),
    ("cards[0].path: library item lib:1 does not exist (deleted?)", "Card 1 (media): library item lib:1 does not exist"),
    ("duration_s: 700 is out of range; allowed 0.1 to 600", "Duration: 700 is out of range"),
    ("Duration must be between 0.1 s and 20 s, not 999 s", "Duration must be between 0.1 s and 20 s, not 999 s"),
])
def test_engine_messages_are_said_in_words(engine, words):
    said = ctl.in_words(engine)
    assert said.startswith(words) and "cards[" not in said and "_s:" not in said


def test_the_seed_field_empty_means_fresh_and_a_bad_one_is_refused():
    from studio.app import seed_request
    assert seed_request("") == {} and seed_request(None) == {} and seed_request(" 42 ") == {"seed": 42}
    for bad in ("-1", "1.5", "x", str(2**32)):
        with pytest.raises(InputError):
            seed_request(bad)


STORY = {"duration_s": 4.0, "fps": 8.0, "aspect": "16:9", "resolution": 64, "cards": [
    {"kind": "text", "start_s": 0.0, "end_s": 1.0, "text": "a red ball"},
    {"kind": "video", "start_s": 1.0, "end_s": 3.0, "path": "lib:1", "source_in_s": 0.5, "source_out_s": 4.5,
     "strength": 1.0},
    {"kind": "image", "at_s": 1.5, "path": "lib:2", "strength": 1.0}]}


def test_shortening_trims_the_cards_that_run_past_the_end_and_keeps_video_speed():
    s, notes = fit_to_length(STORY, 2.0)
    assert s["duration_s"] == 2.0 and s["cards"][0] == STORY["cards"][0] and s["cards"][2] == STORY["cards"][2]
    v = s["cards"][1]
    assert v["end_s"] == 2.0 and v["source_out_s"] == pytest.approx(2.5)   # 2 source s per card s, kept
    assert notes == ["Card 2 now ends at 2 s"] and STORY["cards"][1]["end_s"] == 3.0   # the old story untouched
    longer, notes = fit_to_length(STORY, 6.0)
    assert longer["cards"] == STORY["cards"] and notes == []


@pytest.mark.parametrize("length,card", [(1.0, 2), (1.2, 3)])
def test_shortening_past_a_card_start_is_refused_naming_it(length, card):
    with pytest.raises(InputError, match=f"Card {card} starts at"):
        fit_to_length(STORY, length)


def test_export_writes_the_engine_format_with_library_paths(tmp_path):
    from engine.timeline import Timeline
    from studio.library import Library
    from tests.conftest import ramp_clip
    lib = Library(tmp_path / "home")
    from engine.video_io import write_video
    ref = lib.add_upload(write_video(tmp_path / "c.mp4", ramp_clip(16), 8.0))
    story = {"duration_s": 2.0, "fps": 8.0, "aspect": "16:9", "resolution": 64, "cards": [
        {"kind": "video", "start_s": 0.0, "end_s": 2.0, "path": ref, "strength": 1.0}]}
    d = json.loads(export(lib, story).read_text())
    assert d["cards"][0]["path"] == lib.resolve("x", ref) and Timeline.from_dict(d).duration_s == 2.0


@pytest.mark.parametrize("kind,label,lineage,said", [
    ("remix", "remix: a yellow circle", {}, "remix: a yellow circle"),
    ("extend", "extenda large red circle", {}, "extend: a large red circle"),
    ("recut", "re-cuta large red circle", {}, "re-cut: a large red circle"),
    ("blend", "blend", {"blend_of": ["lib:3", "lib:5"]}, "blend of #3 and #5"),
    ("loop", "loop", {"loop_of": ["lib:4"]}, "loop of #4"),
    ("generate", "a red ball", {}, "a red ball"),
])
def test_labels_say_the_kind_once(kind, label, lineage, said):
    from studio.pages.results import label_of
    assert label_of(kind, label, lineage) == said


def test_deleting_a_source_keeps_its_children_s_lineage_in_words(tmp_path):
    """Finding 7: the question names the children; after the delete, a child says its source was deleted, shows
    its remix amount, and Make again says why it cannot, in words."""
    from engine.video_io import read_video
    from studio.app import Studio, delete_question, make_again, video_info
    from studio.jobs import Jobs
    from studio.pages.library import describe
    from studio.library import Library
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    fast = {"duration_s": 0.5, "resolution": 32, "fps": 8, "steps": 1}
    j = studio.submit("generate", {"prompt": "a red ball", **fast})
    assert studio.wait(j, 120)["state"] == "done"
    parent = lib.videos_of_job(j)[0]
    k = studio.submit("remix", {"video": parent["ref"], "prompt": "a blue box", "amount": 0.3, "steps": 1})
    assert studio.wait(k, 120)["state"] == "done"
    child = lib.videos_of_job(k)[0]
    parent_frames = shutil.copy(parent["path"], tmp_path / "parent.mp4")
    assert f"#{child['id']} remix: a blue box" in delete_question(lib, parent["id"])
    lib.delete(parent["id"])
    info = video_info(lib, lib.video(child["id"]))
    seed = parent["seed"]
    assert f"remix of #{parent['id']} (deleted: a red ball, seed {seed})" in info and "amount 0.3" in info
    with pytest.raises(InputError, match=f"made from #{parent['id']}, which was deleted"):
        make_again(studio, child["id"])
    # The parent's record: shown as deleted with nothing to play, out of the pickers, and made again from its seed.
    player, said, shown, download = describe(studio, parent["id"])
    assert player is None and download is None and shown == parent["id"] and "(deleted)" in said
    assert parent["ref"] not in [ref for _, ref in studio.choices()]
    with pytest.raises(InputError, match="^video: #.* was deleted already"):
        delete_question(lib, parent["id"])
    again, _ = make_again(studio, parent["id"])
    assert studio.wait(again, 120)["state"] == "done"
    remade = lib.videos_of_job(again)[0]
    assert remade["seed"] == seed and np.array_equal(read_video(remade["path"]), read_video(parent_frames))


def test_each_job_in_the_list_has_its_own_cancel_and_opens_its_result(tmp_path):
    """Finding 10: the list offers Cancel on queued and running jobs only; a Cancel cancels that job and no
    other; a click on a job opens it in the tab of its kind."""
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages import jobs_list
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    req = {"prompt": "a red ball", "duration_s": 2.0, "resolution": 32, "fps": 8, "steps": 60}
    first, second = studio.submit("generate", req), studio.submit("generate", req)
    page = jobs_list.render(studio)
    assert f"data-cancel='{first}'" in page and f"data-cancel='{second}'" in page
    assert jobs_list.act(studio, second, "cancel") == (None, f"Cancelling job {second}")
    assert studio.wait(first, 300)["state"] == "done" and studio.wait(second, 300)["state"] == "cancelled"
    assert "data-cancel" not in jobs_list.render(studio)                       # nothing left to cancel
    assert jobs_list.act(studio, first, "open") == ({"job": first, "tab": "create"}, "")
    with pytest.raises(InputError, match="already ended"):
        jobs_list.act(studio, first, "cancel")


@pytest.mark.parametrize("bound,typed", [(ctl.BRIDGE, 9), (ctl.CONTEXT, 0), (ctl.TRIM_START, -1), (ctl.TRIM_END, 61),
                                         (ctl.EXTEND, 25), (ctl.FPS, 0), (ctl.CARD_END, 21)])
def test_every_typed_length_is_checked_against_its_own_range(bound, typed):
    lo, hi = bound.range
    with pytest.raises(InputError, match=f"^{bound.label} must be between {lo:g} s?.*and {hi:g}"):
        bound.check(typed)
    assert bound.check(hi) == hi


@pytest.mark.parametrize("bound,typed,said", [
    (ctl.STEPS, 999, "Steps must be between 1 and 100, not 999"), (ctl.STEPS, 0, "Steps must be between 1 and 100"),
    (ctl.STEPS, 2.5, "Steps must be a whole number from 1 to 100, not 2.5"),
    (ctl.GUIDANCE, 25, "Guidance must be between 1 and 20, not 25"),
    (ctl.STRENGTH, 1.5, "Strength must be between 0 and 1, not 1.5"),
    (ctl.AMOUNT, -0.2, "Custom amount must be between 0 and 1, not -0.2")])
def test_steps_guidance_strength_and_amount_are_refused_not_clamped(bound, typed, said):
    with pytest.raises(InputError, match=f"^{re.escape(said)}"):
        bound.check(typed)


def test_a_handler_refuses_typed_steps_before_anything_is_queued(tmp_path):
    """The Create tab's handler, called as Gradio calls it: 999 steps is a message naming Steps, and no job."""
    import gradio as gr

    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages import create
    from studio.pages.common import bind
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    generate = bind(create.on_generate, studio)
    with pytest.raises(gr.Error, match="Steps must be between 1 and 100, not 999"):
        generate("a red ball", None, "16:9", 32, 1.0, 1, "(none)", 8, 999, 4.0, "", "reference")
    assert lib.jobs(limit=10) == []


STORY_TEXT = {"duration_s": 2.0, "fps": 8.0, "aspect": "16:9", "resolution": 64, "prompt": "at night", "cards": [
    {"kind": "text", "start_s": 0.0, "end_s": 1.2, "text": "a red ball"},
    {"kind": "video", "start_s": 0.0, "end_s": 1.0, "path": "lib:7"},
    {"kind": "text", "start_s": 1.0, "end_s": 2.0, "text": "a blue cube " * 5, "weight": [[0, 0], [1, 1]]}]}


def test_the_plan_table_names_cards_by_number_and_text():
    from studio.pages.storyboard import plan_in_words
    rows = [[0, "0-0", "0.00-0.12", 0.0, "cards[1]", "global, cards[0]"],
            [5, "9-10", "1.12-1.38", 1.0, "", "global, cards[0] 0.50, cards[2] 0.25"],
            [8, "15-16", "1.88-2.12", 1.0, "", "empty"]]
    said = plan_in_words(rows, STORY_TEXT)
    assert said[0][4] == "Card 2 (video #7)" and said[0][5] == "the prompt, Card 1 “a red ball”"
    assert said[1][5].endswith("Card 3 “a blue cube a blue cube a blue cube a bl…” 0.25")  # 40 characters
    assert said[2][5].startswith("nothing") and said[0][:4] == rows[0][:4]


def test_library_search_takes_every_word_of_the_prompt_or_the_number():
    from studio.pages.library import matches
    v = {"id": 12, "kind": "remix", "label": "remix: a blue box turning", "lineage": {"remix_of": ["lib:3"]}}
    assert matches(v, "") and matches(v, "BLUE turning") and matches(v, "#12") and matches(v, "remix")
    assert not matches(v, "blue ball") and not matches(v, "#13")


def test_a_loop_bridge_is_short_normal_long_or_a_typed_length():
    from studio.pages.loop import bridge_of
    assert [bridge_of(k, None) for k in ("Short", "Normal", "Long")] == [0.5, 1.0, 2.0]
    assert bridge_of("Custom", "3") == 3.0
    with pytest.raises(InputError, match="^Bridge must be between 0.1 s and 8 s, not 9 s"):
        bridge_of("Custom", 9)


def test_loop_s_filmstrip_handles_choose_the_section_that_is_looped(tmp_path):
    """Loop picks its section as Re-cut trims: the handles fill the fields, typed fields move the handles, and the
    queued request loops that section (none for the whole clip); a bad one is said in words before queueing."""
    from engine.video_io import write_video
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages import loop, recut
    from tests.conftest import ramp_clip
    lib = Library(tmp_path / "home")
    jobs = Jobs(lib, "reference")
    studio = Studio(lib, jobs)
    ref = lib.add_upload(write_video(tmp_path / "c.mp4", ramp_clip(16), 8.0))
    film, start, end = recut.on_source(studio, ref, None)
    assert (film["duration_s"], start, end) == (2.0, 0.0, 0.0)
    assert recut.on_film(dict(film, in_s=0.5, out_s=1.5)) == (0.5, 1.5)
    moved = loop.on_section_typed(film, 0.25, 1.5)
    assert (moved["in_s"], moved["out_s"]) == (0.25, 1.5)
    assert loop.on_section_typed(film, 1.5, 1.0) == loop.on_section_typed(film, 99, 0) == gr.update()
    args = ("Short", None, 0.25, "", 1, 1.0, "", "reference")
    (w, _), (whole, _) = loop.on_loop(studio, ref, None, 0.5, 1.5, *args), loop.on_loop(studio, ref, None, 0, 0, *args)
    assert lib.job(w["job"])["request"]["section"] == [0.5, 1.5] and w["tab"] == "loop"
    assert "section" not in lib.job(whole["job"])["request"]
    assert lib.job(loop.on_loop(studio, ref, None, 0.5, 0, *args)[0]["job"])["request"]["section"] == [0.5, 2.0]
    with pytest.raises(InputError, match="^section: 1.5:1 is not inside the clip"):
        loop.on_loop(studio, ref, None, 1.5, 1.0, *args)
    with pytest.raises(InputError, match="^Loop from must be between"):
        loop.on_loop(studio, ref, None, 99, 0, *args)
    for j in (w["job"], whole["job"]):
        assert studio.wait(j, 120)["state"] == "done"
    assert lib.videos_of_job(w["job"])[0]["duration_s"] == pytest.approx(1.0 + 0.5)   # the section + the bridge


def test_the_recut_filmstrip_and_the_trim_fields_follow_each_other(tmp_path):
    from engine.video_io import write_video
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages import recut
    from tests.conftest import ramp_clip
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    ref = lib.add_upload(write_video(tmp_path / "c.mp4", ramp_clip(16), 8.0))
    film, start, end = recut.on_source(studio, ref, None)
    assert (film["duration_s"], film["in_s"], film["out_s"], start, end) == (2.0, 0.0, 2.0, 0.0, 0.0)
    assert len(film["frames"]) == recut.FILM_FRAMES and all(f.startswith("data:image/jpeg") for f in film["frames"])
    means = [np.asarray(Image.open(io.BytesIO(base64.b64decode(f.split(",", 1)[1])))).mean() for f in film["frames"]]
    assert means == sorted(means) and means[0] < means[-1]        # a ramp: frames in order, from across the clip
    assert recut.on_film(dict(film, in_s=0.5, out_s=1.5)) == (0.5, 1.5)
    assert recut.on_film(dict(film, in_s=0.5, out_s=2.0)) == (0.5, 0.0)   # out at the end: "to the end"
    moved = recut.on_trim_typed(film, 0.25, 0)
    assert (moved["in_s"], moved["out_s"]) == (0.25, 2.0)
    assert recut.on_trim_typed(film, 1.5, 1.0) == recut.on_trim_typed(film, 99, 0) == gr.update()  # left as they are
    assert recut.on_source(studio, None, None)[0] == recut.NO_FILM


# ----------------------------------------------------------------------------- issue 22: memory setting in the page
# (tiny_wan_folder: tests/conftest.py)


def test_memory_choices_are_memory_py_s_settings_as_it_writes_them():
    from engine.backends.memory import FLAGS, OFFLOADS, parse
    from studio.pages.common import memory_choices
    ch = memory_choices()
    assert len(ch) == len(set(ch)) == len(OFFLOADS) * 2 ** len(FLAGS)
    assert all(str(parse(c)) == c for c in ch) and "none" in ch and "group+fp8+tiling+slicing" in ch


def test_memory_is_fixed_for_the_embedded_model_and_refused_in_words(tmp_path):
    from studio.app import Studio, memory_props
    from studio.jobs import Jobs
    from studio.library import Library
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    props = memory_props(studio, "reference")
    assert props["interactive"] is False and props["value"] == "none" and "only for real models" in props["info"]
    with pytest.raises(InputError, match="^Memory: the reference model runs as it is"):
        studio.set_memory("reference", "group")


def test_memory_pick_reloads_an_idle_model_and_waits_for_a_running_job(tmp_path, tiny_wan_folder):
    """The page's pick: the model's default shown first; a pick while a job of that model runs applies after it
    (the same queue meanwhile); then the queue loads the model with it, and its spec still loads nothing."""
    from engine.backends.memory import parse
    from studio.app import Studio, memory_props, on_memory
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages.common import bind
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    assert memory_props(studio, "wan") == dict(memory_props(studio, "wan"), value="none", interactive=True)
    first = studio.queue("wan")
    job = lib.add_job("generate", {"prompt": "x"}, "x", "wan")
    assert lib.transition(job, "queued", "running")                 # a job of that model is running
    assert studio.set_memory("wan", "model+tiling") == ("wan loads with memory model+tiling once none of its jobs "
                                                       "is queued or running (those keep the model they have)")
    assert studio.queue("wan") is first and memory_props(studio, "wan")["value"] == "model+tiling"
    assert lib.transition(job, "running", "done")
    q = studio.queue("wan")
    assert q.memory == "model+tiling" and q is not first
    assert q.spec == first.spec and q.loaded is None                # picking and planning load nothing
    assert q.backend.memory == parse("model+tiling")                # its next job's model loads with it
    with pytest.raises(gr.Error, match="Memory: 'huge' is not a memory setting"):
        bind(on_memory, studio)("wan", "huge")
    assert studio.memory("wan") == "model+tiling"


def test_memory_flag_of_the_studio_server_sets_the_default_or_is_refused(tmp_path, tiny_wan_folder, monkeypatch,
                                                                        capsys):
    from studio import server
    from studio.app import Studio, memory_props
    from studio.jobs import Jobs
    from studio.library import Library
    assert server.main(["--memory", "huge", "--home", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cinepatch: error: memory: 'huge' is not a memory setting") and "\n" not in err
    monkeypatch.setattr(server, "launch", lambda *a, **k: None)
    monkeypatch.setenv("CINEPATCH_MEMORY", "")   # restored after the test: main() writes it
    assert server.main(["--memory", "group+tiling", "--home", str(tmp_path / "h")]) == 0
    lib = Library(tmp_path / "home")
    assert memory_props(Studio(lib, Jobs(lib, "reference")), "wan")["value"] == "group+tiling"


# ----------------------------------------------------------------------------- issue 22: a preset's LoRAs in the page
def test_lora_preset_is_shown_under_its_dropdown_and_a_wrong_one_says_the_engine_s_line(tmp_path, monkeypatch):
    """Each LoRA by file name, scale and expert; nothing for a preset without; on the embedded model and on a
    loaded model the LoRA was not made for, the engine's one-line refusal; a real model not loaded: not loaded
    for it. The message the engine gives for a bad preset file is said too."""
    pytest.importorskip("peft")
    import shutil

    from engine import presets
    from engine.backends.wan import WanBackend
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages.create import preset_loras
    from tests.test_lora import MODULES, make_lora
    from tests.test_wan import tiny_pipe
    for f in presets.PRESETS_DIR.glob("*.toml"):
        shutil.copy(f, tmp_path)
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    wan = WanBackend.from_pipe(tiny_pipe())
    make_lora(wan.transformer, tmp_path / "loras" / "ink.safetensors")
    make_lora(wan.transformer, tmp_path / "loras" / "wide.safetensors", modules=MODULES[:1], sizes=(48, 48))
    (tmp_path / "ink.toml").write_text('[[lora]]\nfile = "loras/ink.safetensors"\nscale = 0.8\n')
    (tmp_path / "wide.toml").write_text('[[lora]]\nfile = "loras/wide.safetensors"\nexpert = "transformer"\n')
    (tmp_path / "gone.toml").write_text('lora = "loras/missing.safetensors"\n')
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    studio.queues["wan"] = Jobs(lib, "wan", loader=lambda: wan)
    assert preset_loras(studio, "(none)", "wan") == "" and preset_loras(studio, "noir", "wan") == ""
    assert preset_loras(studio, "ink", "wan") == "LoRA **ink.safetensors** · scale 0.8 · transformer"
    assert preset_loras(studio, "wide", "wan") == "LoRA **wide.safetensors** · scale 1 · transformer"
    assert studio.queue("wan")._backend is None        # the model is not loaded to say more
    studio.queue("wan").backend
    assert preset_loras(studio, "ink", "wan") == "LoRA **ink.safetensors** · scale 0.8 · transformer"
    wide = preset_loras(studio, "wide", "wan").split("  \n")
    assert wide[0] == "LoRA **wide.safetensors** · scale 1 · transformer"
    assert wide[1].startswith(f"⚠ lora: {tmp_path / 'loras' / 'wide.safetensors'} was made for another base model "
                              "than the wan model") and len(wide) == 2
    on_toy = preset_loras(studio, "ink", "reference").split("  \n")
    assert on_toy[1] == ("⚠ preset: ink names LoRA files; the reference backend takes none (LoRAs are for the "
                         "diffusers backends: ltx, wan, wan22-5b, wan22-14b)")
    gone = preset_loras(studio, "gone", "wan")
    assert gone.startswith("⚠ preset gone.lora[0]: LoRA file ") and gone.endswith("does not exist")


# ----------------------------------------------------------------------------- issue 21: drops onto the strip
@pytest.fixture
def drop_studio(tmp_path, monkeypatch):
    """A studio with a 1 s Library clip (lib:<id>), an uploaded image, and Gradio's upload folder in tmp_path."""
    from engine.video_io import write_image
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from tests.conftest import ramp_clip
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    lib = Library(tmp_path / "home")
    meta = {"storyboard": {}, "settings": {"steps": 1}, "backend": "reference", "seed": 7}
    vid = lib.add_video(None, "generate", "a red ball", ramp_clip(8, 48, 32), 8.0, meta, {})
    img = lib.add_upload(write_image(tmp_path / "red.png", np.full((32, 48, 3), 200, np.uint8)))
    return Studio(lib, Jobs(lib, "reference")), f"lib:{vid}", img


def dropped(studio, story, drop):
    """on_strip for a drop, as the strip sends it -> (story, selected, strip, cards table, Save's file)."""
    from studio.pages.storyboard import on_strip
    out = on_strip(studio, dict(studio.strip_value(story, None), drop=drop), story, "reference")
    return out[0], out[1], out[2], out[3], out[6]


def test_drop_a_library_clip_and_an_image_onto_the_strip_makes_cards_everywhere_alike(drop_studio):
    from studio.pages.storyboard import DEFAULT
    studio, clip, img = drop_studio
    s, sel, strip, rows, saved = dropped(studio, dict(DEFAULT), {"at_s": 1.5, "ref": clip})
    assert s["cards"] == [{"kind": "video", "start_s": 1.5, "end_s": 2.5, "path": clip, "source_in_s": 0.0,
                           "source_out_s": 1.0, "strength": 1.0}] and sel == 0
    s, sel, strip, rows, saved = dropped(studio, s, {"at_s": 3.5, "ref": clip})       # trimmed at the end, same speed
    assert (s["cards"][1]["end_s"], s["cards"][1]["source_out_s"]) == (4.0, 0.5)
    s, sel, strip, rows, saved = dropped(studio, s, {"at_s": 1.5, "ref": img})        # images have their own lane
    assert s["cards"][2] == {"kind": "image", "at_s": 1.5, "path": img, "strength": 1.0} and sel == 2
    on_file = json.loads(open(saved).read())
    assert strip["cards"] == s["cards"] and [r[2] for r in rows] == ["1.5–2.5 s", "3.5–4 s", "1.5 s"]
    assert [{k: v for k, v in c.items() if k != "path"} for c in on_file["cards"]] == \
        [{k: v for k, v in c.items() if k != "path"} for c in s["cards"]]
    assert on_file["cards"][0]["path"] == studio.library.resolve("x", clip)


@pytest.mark.parametrize("drop,said", [
    ({"at_s": 2.0, "ref": "CLIP"}, "The dropped clip (2–3 s) would overlap Card 1 (video #1) (1.5–2.5 s)"),
    ({"at_s": 1.0, "ref": "IMG"}, "Card 2 (image "),
    ({"at_s": 4.0, "ref": "CLIP"}, "A clip dropped at 4 s starts at the storyboard's end (4 s)"),
    ({"at_s": -1, "ref": "CLIP"}, "Drop time must be between 0 s and 20 s, not -1 s"),
    ({"at_s": 1.0, "ref": "/etc/passwd"}, "Drop: nothing usable was dropped"),
    ({"at_s": 1.0, "file": "/etc/passwd"}, "Dropped file: it did not arrive; drop it again"),
    ({"at_s": 1.0, "error": "Error: 413 too large"}, "Dropped file: it could not be uploaded (Error: 413 too large)"),
    ("junk", "Drop: nothing usable was dropped"),
])
def test_drop_that_would_overlap_or_is_bad_is_refused_in_words_and_the_strip_shows_the_cards_as_they_are(
        drop_studio, drop, said, monkeypatch):
    from studio.pages.storyboard import DEFAULT
    studio, clip, img = drop_studio
    s = dict(DEFAULT, cards=[{"kind": "video", "start_s": 1.5, "end_s": 2.5, "path": clip, "strength": 1.0},
                             {"kind": "image", "at_s": 1.0, "path": img, "strength": 1.0}])
    if isinstance(drop, dict) and "ref" in drop:
        drop = dict(drop, ref={"CLIP": clip, "IMG": img}.get(drop["ref"], drop["ref"]))
    warned = []
    monkeypatch.setattr(gr, "Warning", warned.append)   # the page's warning toast
    after, sel, strip, rows, _ = dropped(studio, s, drop)
    assert len(warned) == 1 and said in warned[0] and "\n" not in warned[0] and "cards[" not in warned[0], warned
    assert after == s and strip["cards"] == s["cards"] and len(rows) == 2


def test_drop_a_file_from_the_desktop_takes_it_from_the_upload_folder_only(drop_studio, tmp_path, monkeypatch):
    from engine.video_io import write_image
    from studio.pages.storyboard import DEFAULT
    studio = drop_studio[0]
    up = tmp_path / "gradio" / "abc123" / "blue.png"
    up.parent.mkdir(parents=True)
    write_image(up, np.full((32, 48, 3), 90, np.uint8))
    s, sel, strip, rows, saved = dropped(studio, dict(DEFAULT), {"at_s": 0.5, "file": str(up)})
    assert s["cards"][0]["kind"] == "image" and s["cards"][0]["at_s"] == 0.5
    assert s["cards"][0]["path"].startswith("upload:") and s["cards"][0]["path"].endswith("_blue.png")
    outside = tmp_path / "blue.png"
    write_image(outside, np.full((32, 48, 3), 90, np.uint8))
    warned = []
    monkeypatch.setattr(gr, "Warning", warned.append)
    text = up.with_name("notes.txt")
    text.write_text("not a picture")
    for path in (str(outside), str(up.parent / ".." / ".." / "blue.png"), str(text)):
        assert dropped(studio, dict(DEFAULT), {"at_s": 0.5, "file": path})[0]["cards"] == []
    assert warned[:2] == ["Dropped file: it did not arrive; drop it again"] * 2
    assert warned[2] == f"Dropped file: '{text}' is not a readable video or image"


def test_the_picked_media_chip_carries_the_reference_to_drop(drop_studio):
    from studio.pages.storyboard import picked
    studio, clip, img = drop_studio
    assert picked(studio, None, None) == {}
    chip = picked(studio, clip, None)
    assert chip["ref"] == clip and chip["name"].startswith("#") and chip["thumb"].startswith("data:image/jpeg")


def test_sound_is_offered_by_a_model_that_makes_it_and_refused_in_words_by_one_that_does_not(tmp_path):
    """Create's Sound checkbox shows for LTX-2 only; ticked on a model without sound, the page says so, no job."""
    import gradio as gr

    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages import create
    from studio.pages.common import bind
    assert create.on_backend("ltx2")[2]["visible"] is True
    assert all(create.on_backend(name)[2]["visible"] is False for name in ("toy", "ltx", "wan", "wan22-5b"))
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    generate = bind(create.on_generate, studio)
    with pytest.raises(gr.Error, match="the reference model makes no sound"):
        generate("a red ball", None, "16:9", 32, 1.0, 1, "(none)", 8, 2, 4.0, "", "reference", True)
    assert lib.jobs(limit=10) == []
    watch, _ = generate("a red ball", None, "16:9", 32, 1.0, 1, "(none)", 8, 2, 4.0, "", "reference", False)
    assert studio.wait(watch["job"], 120)["state"] == "done"     # (not left running while the interpreter exits)
    assert [j["request"].get("audio") for j in lib.jobs(limit=10)] == [None]


def test_a_job_without_a_picture_shows_an_empty_box_not_a_broken_image(tmp_path):
    """A queued job, or a re-cut (no model, so no step preview), had an <img> with no src: a broken-image icon."""
    import re

    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.pages import jobs_list
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    job = lib.add_job("recut", {"video": "lib:1"}, "re-cut", "reference")
    assert lib.transition(job, "queued", "running") and lib.transition(job, "running", "done")
    row = jobs_list.render(studio)
    assert "cp-thumb" in row and all("src=" in tag for tag in re.findall(r"<img[^>]*>", row)), row


def test_every_library_listing_waits_its_turn_so_an_older_list_never_lands_after_a_search(tmp_path):
    """Opening the Library tab and searching at once (a busy machine) once let the tab's unfiltered list land after
    the search's: every listing of the library is one queue of one, answered in the order asked."""
    from studio.app import Studio, build
    from studio.jobs import Jobs
    from studio.library import Library
    lib = Library(tmp_path / "home")
    demo = build(Studio(lib, Jobs(lib, "reference")))
    gallery = next(b._id for b in demo.blocks.values() if getattr(b, "elem_id", None) == "lib-gallery")
    listings = [f for f in demo.fns.values() if gallery in [o._id for o in f.outputs]]
    assert len(listings) >= 8     # refresh, favourites only, kind, search, page load, tab change, favourite, delete
    assert {(f.concurrency_id, f.concurrency_limit) for f in listings} == {("library-view", 1)}
