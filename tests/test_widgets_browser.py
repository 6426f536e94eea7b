"""Studio widgets: normalize_curve's checks, and the curve editor and timeline strip driven in a real browser.

The browser tests run Debian's Chromium through Playwright against a tiny Gradio page where
each widget's value is mirrored into a textbox by its `.change` handler (and `.input` /
`.select` where those are part of the contract), so what is asserted is what Python received.
"""
import json
import os
import socket

import pytest

from engine.params import InputError
from tests.conftest import drag, press_point, stable_box
from studio.widgets import (CURVE_PRESETS, curve_editor, curve_preset, curve_preview_html, filmstrip, normalize_curve,
                            timeline_strip)

WAIT_MS = 30_000  # generous: the machine may be busy training
READOUT = "document.querySelector('#recut-film .cp-film-readout').innerText"

STRIP = {"duration_s": 8.0, "selected": None, "thumbs": {}, "cards": [
    {"kind": "text", "start_s": 0.0, "end_s": 2.0, "text": "a lighthouse at dawn, waves rolling in", "weight": None},
    {"kind": "text", "start_s": 1.0, "end_s": 3.0, "text": "gulls overhead", "weight": [[0, 0], [1, 1]]},
    {"kind": "image", "at_s": 4.0, "path": "keyframe.png", "strength": 1.0},
    {"kind": "video", "start_s": 5.0, "end_s": 7.0, "path": "clips/surf.mp4", "source_in_s": 0.0,
     "source_out_s": None, "strength": 0.8, "weight": None},
]}



def _frame_uri(k: int) -> str:
    """A tiny PNG frame as a data: URI, grey level k."""
    import base64
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (16, 9), (40 * k, 40 * k, 40 * k)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


FILM = {"duration_s": 4.0, "frames": [_frame_uri(k) for k in range(5)], "in_s": 0.0, "out_s": 4.0}

# ----------------------------------------------------------------------------- normalize_curve
def test_normalize_curve_accepts_presets_dicts_and_json():
    for preset in CURVE_PRESETS.values():
        assert normalize_curve(preset) == preset
    v = normalize_curve('{"mix": [[1, 1], [0, 0], [0.5, 0.25]], "repaint": [[0, 0.5], [1, 0.5]], "edit": "repaint"}')
    assert v == {"mix": [[0.0, 0.0], [0.5, 0.25], [1.0, 1.0]], "repaint": [[0.0, 0.5], [1.0, 0.5]], "edit": "repaint"}
    assert normalize_curve({"mix": [[0, 0], [1, 1]]})["edit"] == "mix"


@pytest.mark.parametrize("value, message", [
    ("{not json", "curve: not valid JSON"),
    ([[0, 0], [1, 1]], "curve: expected an object"),
    ({"mix": [[0, 0], [1, 1]], "colour": 1}, "curve: unknown key 'colour'"),
    ({"repaint": None}, "curve.mix: missing"),
    ({"mix": "0:0,1:1"}, "curve.mix: expected a list"),
    ({"mix": [[0, 0]]}, "curve.mix: has 1 point(s); allowed 2..64"),
    ({"mix": [[i / 64, 0] for i in range(64)] + [[1, 0]]}, "curve.mix: has 65 point(s)"),
    ({"mix": [[0, 0], [0.5]]}, "curve.mix: point 2 is [0.5]; expected a [time, mix] pair"),
    ({"mix": [[0, 0], [0.5, 1.4], [1, 1]]}, "curve.mix: point 2 has mix 1.4; allowed 0..1"),
    ({"mix": [[0, 0], [1.2, 1]]}, "curve.mix: point 2 has time 1.2; allowed 0..1"),
    ({"mix": [[0, float("nan")], [1, 1]]}, "curve.mix: point 1 has mix nan; expected a finite number"),
    ({"mix": [[0, True], [1, 1]]}, "curve.mix: point 1 has mix True"),
    ({"mix": [[0, "0"], [1, 1]]}, "curve.mix: point 1 has mix '0'"),
    ({"mix": [[0, 0], [0.5, 0], [0.5, 1], [1, 1]]}, "curve.mix: two points at time 0.5"),
    ({"mix": [[0.1, 0], [1, 1]]}, "curve.mix: runs from time 0.1 to 1; it must start at 0 and end at 1"),
    ({"mix": [[0, 0], [0.9, 1]]}, "curve.mix: runs from time 0 to 0.9"),
    ({"mix": [[0, 0], [1, 1]], "repaint": [[0, 0], [1, -0.5]]}, "curve.repaint: point 2 has repaint -0.5"),
    ({"mix": [[0, 0], [1, 1]], "edit": "noise"}, "curve.edit: 'noise' is not allowed"),
])
def test_normalize_curve_names_the_field(value, message):
    with pytest.raises(InputError) as e:
        normalize_curve(value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_curve_preview_says_what_the_curve_means():
    text = curve_preview_html(CURVE_PRESETS["transition"])
    assert "0–35 %: A · 35–65 %: crossfade A→B · 65–100 %: B" in text
    assert "automatic repaint peaks at 0.90 at 50 %" in text
    assert "0–100 %: blend 50 % A + 50 % B" in curve_preview_html(CURVE_PRESETS["mix"])
    sample = curve_preview_html(CURVE_PRESETS["sample"])
    assert "40–50 %: crossfade A→B · 50–60 %: crossfade B→A · 60–100 %: A" in sample
    custom = curve_preview_html({"mix": [[0, 0], [1, 0]], "repaint": [[0, 0.2], [0.3, 0.6], [1, 0.1]]})
    assert "repaint peaks at 0.60 at 30 %" in custom
    assert "no automatic repaint" in curve_preview_html({"mix": [[0, 1], [1, 1]]})
    assert "&lt;" not in text and "<div" in text


def test_curve_preset_is_a_copy():
    p = curve_preset("transition")
    p["mix"][0][1] = 0.5
    assert CURVE_PRESETS["transition"]["mix"][0][1] == 0.0


# ----------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def app_url(chromium):
    """A page with the three widgets; each widget's value is mirrored by Python into textboxes."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr
    with gr.Blocks() as demo:
        curve = curve_editor(CURVE_PRESETS["transition"])
        curve_out = gr.Textbox(elem_id="curve-out")
        curve_in = gr.Textbox(elem_id="curve-in")
        strip = timeline_strip(STRIP)
        strip_out = gr.Textbox(elem_id="strip-out")
        strip_sel = gr.Textbox(elem_id="strip-sel")
        to_mix = gr.Button("Mix preset", elem_id="to-mix")
        to_mix.click(lambda: curve_preset("mix"), None, curve)
        curve.change(json.dumps, curve, curve_out)
        curve.input(json.dumps, curve, curve_in)
        strip.change(json.dumps, strip, strip_out)

        def on_select(evt: gr.SelectData):
            return json.dumps([evt.index, evt.value])
        strip.select(on_select, None, strip_sel)
        film = filmstrip(FILM)
        film_in = gr.Textbox(elem_id="film-in")
        film.input(json.dumps, film, film_in)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture
def page(chromium, app_url):
    page = chromium.new_page(viewport={"width": 1100, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app_url)
    page.locator("#blend-curve .cp-point").first.wait_for()
    page.locator("#storyboard-strip .cp-card").first.wait_for()
    yield page
    page.close()


def mirrored(page, elem_id: str, condition: str = "true"):
    """The JSON Python wrote into textbox `elem_id`, once it parses and the JS `condition` on `v` holds."""
    box = f"document.querySelector('#{elem_id} textarea, #{elem_id} input')"
    read = f"(() => {{ const t = {box}; return t && t.value; }})()"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_function(f"() => {{ try {{ const v = JSON.parse({read}); return v !== null && ({condition}); }} "
                               f"catch (e) {{ return false; }} }}", timeout=WAIT_MS)
    except PlaywrightTimeout:
        raise AssertionError(f"#{elem_id} never held {condition!r}; it holds {page.evaluate(read)!r}") from None
    return json.loads(page.evaluate(read))


def assert_well_formed(mix):
    ts = [t for t, _ in mix]
    assert ts[0] == 0 and ts[-1] == 1
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert normalize_curve({"mix": mix})["mix"] == mix


def test_curve_drag_point_down_lowers_its_mix(page):
    handle = page.locator('#blend-curve .cp-point[data-curve="mix"][data-i="2"]')  # (0.65, 1)
    drag(page, handle, 0, 70)
    v = mirrored(page, "curve-out", "v.mix[2][1] < 1")
    assert len(v["mix"]) == 4
    assert 0 < v["mix"][2][1] < 0.9
    assert v["mix"][2][0] == pytest.approx(0.65, abs=0.02)
    assert v["mix"][:2] == [[0, 0], [0.35, 0]] and v["mix"][3] == [1, 1]
    assert_well_formed(v["mix"])
    assert v["repaint"] is None and v["edit"] == "mix"
    assert mirrored(page, "curve-in", "v.mix[2][1] < 1") == v  # .input carries the same value


def test_curve_click_adds_a_point_and_double_click_removes_it(page):
    from playwright.sync_api import expect
    plot = page.locator("#blend-curve .cp-frame")
    box = stable_box(page, plot)    # the layout settles late on a busy machine: a click on a moving box misses
    # at 20 % of the time and mix 0.6: empty space, away from the curve (which is at 0 there)
    page.mouse.click(box["x"] + 0.2 * box["width"], box["y"] + 0.4 * box["height"])
    v = mirrored(page, "curve-out", "v.mix.length === 5")
    assert v["mix"][1][0] == pytest.approx(0.2, abs=0.02) and v["mix"][1][1] == pytest.approx(0.6, abs=0.03)
    assert_well_formed(v["mix"])

    points = page.locator('#blend-curve .cp-point[data-curve="mix"]')
    expect(points).to_have_count(5)
    x, y = press_point(page, points.nth(1))
    page.mouse.dblclick(x, y)
    v = mirrored(page, "curve-out", "v.mix.length === 4")
    assert v["mix"] == CURVE_PRESETS["transition"]["mix"]

    points.nth(1).click(button="right")  # right-click removes too
    v = mirrored(page, "curve-out", "v.mix.length === 3")
    assert v["mix"] == [[0, 0], [0.65, 1], [1, 1]]

    # endpoints stay: double-clicking the first point changes nothing
    x, y = press_point(page, points.nth(0))
    page.mouse.dblclick(x, y)
    expect(points).to_have_count(3)


def test_curve_redraws_when_python_sets_the_value(page):
    from playwright.sync_api import expect
    expect(page.locator("#blend-curve .cp-repaint-line.cp-auto")).to_have_count(1)  # automatic: dashed
    page.locator("#to-mix button, button#to-mix").first.click()
    expect(page.locator('#blend-curve .cp-point[data-curve="mix"]')).to_have_count(2)
    assert mirrored(page, "curve-out", "v.mix.length === 2") == CURVE_PRESETS["mix"]


def test_strip_click_selects_a_card(page):
    page.locator('#storyboard-strip .cp-card[data-i="2"]').click()
    v = mirrored(page, "strip-out", "v.selected === 2")
    assert v["cards"] == STRIP["cards"]
    card = {k: x for k, x in STRIP["cards"][2].items() if k != "path"}
    assert mirrored(page, "strip-sel", "v[0] === 2") == [2, card]
    assert "cp-selected" in page.locator('#storyboard-strip .cp-card[data-i="2"]').get_attribute("class")


def test_strip_drag_moves_a_text_card_in_time(page):
    card = page.locator('#storyboard-strip .cp-card[data-i="0"]')
    track = page.locator('#storyboard-strip .cp-lane[data-kind="text"] .cp-track')
    drag(page, card, 0.25 * track.bounding_box()["width"], 0)  # a quarter of 8 s
    v = mirrored(page, "strip-out", "v.cards[0].start_s > 0")
    moved = v["cards"][0]
    assert moved["start_s"] == pytest.approx(2.0, abs=0.2)
    assert moved["end_s"] - moved["start_s"] == pytest.approx(2.0)
    assert round(moved["start_s"] * 10, 6) == round(moved["start_s"] * 10)  # snapped to 0.1 s
    assert v["selected"] == 0
    assert v["cards"][1:] == STRIP["cards"][1:]


def test_strip_drag_an_edge_resizes_a_card(page):
    """A span card's end edge dragged right makes it longer; its start stays (snapped to 0.1 s)."""
    edge = page.locator('#storyboard-strip .cp-card[data-i="0"] .cp-edge-end')
    track = page.locator('#storyboard-strip .cp-lane[data-kind="text"] .cp-track')
    drag(page, edge, 0.125 * track.bounding_box()["width"], 0)  # an eighth of 8 s
    v = mirrored(page, "strip-out", "v.cards[0].end_s > 2")
    assert v["cards"][0]["start_s"] == 0 and v["cards"][0]["end_s"] == pytest.approx(3.0, abs=0.2)
    assert round(v["cards"][0]["end_s"] * 10, 6) == round(v["cards"][0]["end_s"] * 10)
    edge = page.locator('#storyboard-strip .cp-card[data-i="3"] .cp-edge-start')   # the video card, 5-7 s
    drag(page, edge, -0.125 * track.bounding_box()["width"], 0)
    v = mirrored(page, "strip-out", "v.cards[3].start_s < 5")
    assert v["cards"][3]["start_s"] == pytest.approx(4.0, abs=0.2) and v["cards"][3]["end_s"] == 7.0


def test_filmstrip_handles_set_the_in_and_out_points(page):
    """Re-cut's filmstrip: the out handle dragged a quarter to the left sends out ~3 s of 4; then the in handle a
    quarter to the right sends in ~1 s; each kept inside the clip and apart."""
    frames = page.locator("#recut-film .cp-film-frames")
    frames.scroll_into_view_if_needed()
    shown = page.locator("#recut-film .cp-film-frames img")
    shown.first.wait_for()
    assert shown.count() == len(FILM["frames"])
    width = stable_box(page, frames)["width"]
    drag(page, page.locator("#recut-film .cp-film-out"), -0.25 * width, 0, held=f"() => !{READOUT}.includes('out 4 s')")
    v = mirrored(page, "film-in", "v.out_s < 4")
    assert v["in_s"] == 0 and v["out_s"] == pytest.approx(3.0, abs=0.15)
    drag(page, page.locator("#recut-film .cp-film-in"), 0.25 * width, 0, held=f"() => !{READOUT}.includes('in 0 s')")
    v = mirrored(page, "film-in", "v.in_s > 0")
    assert v["in_s"] == pytest.approx(1.0, abs=0.15) and v["out_s"] == pytest.approx(3.0, abs=0.15)
    drag(page, page.locator("#recut-film .cp-film-in"), 2 * width, 0,         # past the out point: stops short
         held=f"() => {READOUT}.includes('keeps 0.05 s')")
    v = mirrored(page, "film-in", "v.in_s > 1.5")
    assert v["out_s"] - v["in_s"] == pytest.approx(0.05, abs=1e-6)
    assert "keeps 0.05 s of 4 s" in page.locator("#recut-film .cp-film-readout").inner_text()
