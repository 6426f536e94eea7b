"""Timeline: JSON round-trip and validation messages that name the card and field."""
import json

import pytest

from engine.params import InputError
from engine.timeline import Curve, ImageCard, Piece, TextCard, Timeline, VideoCard, load, parse_aspect, save


def full_timeline():
    return Timeline(
        duration_s=3.0, fps=12, aspect="9:16", resolution=64, seed=7, variations=2, preset="noir",
        prompt="on a black background", negative_prompt="blurry", fit="pad", crossfade_s=0.25,
        noise=Curve(((0.0, 0.2), (1.0, 0.8))),
        cards=[TextCard(0, 1.5, "a red circle"), TextCard(1.5, 3, "a blue square", weight=Curve(((0, 0), (1, 1)))),
               ImageCard(0.5, "a.png", 0.8), VideoCard(1, 3, "b.mp4", 0.5, 1.5, 0.6, Curve(((0, 1), (1, 0))))],
        assemble=[Piece("generated", 0, 2), Piece("b.mp4", 0, 1)])


def test_json_round_trip_is_equal():
    tl = full_timeline()
    back = Timeline.from_json(tl.to_json(), check_media=False)
    assert back == tl
    assert json.loads(back.to_json()) == json.loads(tl.to_json())


def test_save_load_round_trip(tmp_path, make_video, make_image):
    img, vid = make_image(), make_video()
    tl = Timeline(duration_s=2, cards=[ImageCard(0, "img.png"), VideoCard(0.5, 1.5, "clip.mp4")])
    save(tl, tmp_path / "story.json")
    back = load(tmp_path / "story.json")
    assert back == tl
    assert back.resolve("img.png") == img and back.resolve("clip.mp4") == vid


def test_overlapping_text_cards_allowed_with_a_weight_curve():
    d = Timeline(duration_s=2, cards=[TextCard(0, 2, "a", weight=Curve(((0, 1), (1, 0)))), TextCard(0, 2, "b")]).to_dict()
    assert len(Timeline.from_dict(d).cards) == 2


BASE = {"duration_s": 2, "fps": 12, "cards": []}


def with_(**kw):
    d = json.loads(json.dumps(BASE))
    d.update(kw)
    return d


BAD = [
    (with_(duration_s=0), "duration_s"),
    (with_(duration_s=36000), "duration_s"),
    (with_(fps=0), "fps"),
    (with_(aspect="wide"), "aspect"),
    (with_(aspect="10:1"), "aspect"),
    (with_(fit="zoom"), "fit"),
    (with_(variations=0), "variations"),
    (with_(bogus=1), "unknown field 'bogus'"),
    (with_(cards=[{"kind": "sound", "start_s": 0}]), "cards[0].kind"),
    (with_(cards=[{"kind": "text", "start_s": 0, "end_s": 3, "text": "x"}]), "cards[0].end_s"),
    (with_(cards=[{"kind": "text", "start_s": 1, "end_s": 0.5, "text": "x"}]), "cards[0].end_s"),
    (with_(cards=[{"kind": "text", "start_s": 0, "end_s": 1, "text": ""}]), "cards[0].text"),
    (with_(cards=[{"kind": "text", "start_s": 0}]), "cards[0].end_s: missing"),
    (with_(cards=[{"kind": "text", "start_s": 0, "end_s": 1.5, "text": "a"},
                  {"kind": "text", "start_s": 1, "end_s": 2, "text": "b"}]), "cards[1].start_s"),
    (with_(cards=[{"kind": "text", "start_s": 0, "end_s": 2, "text": "a"},
                  {"kind": "text", "start_s": 0.5, "end_s": 1, "text": "b", "weight": None},
                  {"kind": "text", "start_s": 1.2, "end_s": 1.8, "text": "c"}]), "overlap"),
    (with_(cards=[{"kind": "image", "at_s": 5, "path": "x.png"}]), "cards[0].at_s"),
    (with_(cards=[{"kind": "image", "at_s": 0, "path": "x.png", "strength": 2}]), "cards[0].strength"),
    (with_(noise=[[0, float("nan")], [1, 1]]), "noise[0]"),
    (with_(noise=[[0, 0.5], [1.5, 1]]), "noise[1]"),
    (with_(noise=[[0.5, 0.5], [0.2, 1]]), "noise[1]"),
    (with_(cards=[{"kind": "video", "start_s": 0, "end_s": 1, "path": "v.mp4", "weight": "0:0,1:x"}]), "cards[0].weight"),
    (with_(assemble=[{"source": "generated", "in_s": 1, "out_s": 0.5}]), "assemble[0].out_s"),
    (with_(version=99), "version"),
    ([1, 2], "storyboard"),
]


@pytest.mark.parametrize("d,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input_names_the_field(d, needle):
    with pytest.raises(InputError) as e:
        Timeline.from_dict(d, check_media=False)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_malformed_json_says_where():
    with pytest.raises(InputError, match=r"storyboard: not valid JSON \(line 1"):
        Timeline.from_json('{"duration_s": 2,, }')


def test_missing_and_corrupt_media(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    for path in ("missing.png", "bad.mp4"):
        d = with_(cards=[{"kind": "video", "start_s": 0, "end_s": 1, "path": path}])
        with pytest.raises(InputError, match=r"^cards\[0\]\.path"):
            Timeline.from_dict(d, base_dir=str(tmp_path))


def test_video_card_past_the_end_of_its_source(tmp_path, make_video):
    make_video(n=12, fps=12)  # 1 s
    d = with_(cards=[{"kind": "video", "start_s": 0, "end_s": 2, "path": "clip.mp4"}])
    with pytest.raises(InputError, match=r"cards\[0\]\.source_out_s"):
        Timeline.from_dict(d, base_dir=str(tmp_path))


@pytest.mark.parametrize("text,expected", [("16:9", (16, 9)), ("1:1", (1, 1)), ("9:16", (9, 16)), ("4:3", (4, 3))])
def test_parse_aspect(text, expected):
    assert parse_aspect(text) == expected


def test_curve_parse_and_eval():
    c = Curve.parse("0:0,0.4:0,0.6:1,1:1")
    assert c(0.5) == pytest.approx(0.5) and c(0.2) == 0 and c(0.9) == 1
    assert Curve.parse(0.3)(0.7) == pytest.approx(0.3)


def test_times_shorter_than_a_clip_length_are_fine():
    tl = Timeline.from_dict({"duration_s": 1, "cards": [{"kind": "text", "start_s": 0.05, "end_s": 0.08, "text": "x"}]},
                            check_media=False)
    assert tl.cards[0].start_s == 0.05


@pytest.mark.parametrize("text,needle", [('{"seed": NaN}', "seed: must be a finite"),
                                         ('{"resolution": Infinity}', "resolution: must be a finite"),
                                         ('{"seed": 1' + "0" * 400 + "}", "seed: must be a finite"),
                                         ('{"seed": 4294967295, "variations": 2}', "seed: 4294967295 + 2"),
                                         ('{"assemble": []}', "assemble: expected a non-empty"),
                                         ('{"assemble": [{"source": 5, "in_s": 0, "out_s": 1}]}', "assemble[0].source")])
def test_json_edge_values_are_refused_by_name(text, needle):
    with pytest.raises(InputError) as e:
        Timeline.from_json(text, check_media=False)
    assert needle in str(e.value) and len(str(e.value)) < 200
