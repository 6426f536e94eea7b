"""Presets: data files, checked against the declared ranges, applied by one function."""
import pytest

from engine import presets
from engine.api import resolve_settings
from engine.params import InputError
from engine.plan import compile
from engine.timeline import TextCard, Timeline


@pytest.mark.parametrize("name", presets.available())
def test_every_shipped_preset_loads(name):
    p = presets.load(name)
    assert p.name == name and all(k in presets.SETTINGS_KEYS for k, _ in p.settings)


def test_style_goes_on_every_prompt_and_negative_only_when_unset(backend):
    tl = Timeline(duration_s=1, fps=8, prompt="", preset="noir",
                  cards=[TextCard(0, 0.5, "a red ball"), TextCard(0.5, 1, "a blue box")])
    styled = presets.apply(presets.load("noir"), tl)
    assert [c.text for c in styled.cards] == ["a red ball, on a black background", "a blue box, on a black background"]
    assert styled.prompt == "" and styled.negative_prompt.startswith("white background")
    assert presets.apply(presets.load("noir"), tl.replace(negative_prompt="blur")).negative_prompt == "blur"
    from engine.api import with_preset
    segs = compile(with_preset(tl), backend).segments
    assert segs[0].text.endswith("on a black background")


def test_explicit_settings_override_the_preset():
    tl = Timeline(preset="draft")
    assert resolve_settings(tl).steps == 8
    assert resolve_settings(tl, {"steps": 30, "guidance": None}).steps == 30
    assert resolve_settings(tl, {"steps": 30}).guidance == 3.0


def test_unknown_or_bad_presets_are_refused(tmp_path):
    with pytest.raises(InputError, match="preset: unknown preset 'nope'; available: .*draft"):
        Timeline.from_dict({"duration_s": 1, "preset": "nope"})
    with pytest.raises(InputError, match="unknown preset"):
        presets.load("../presets/noir")
    (tmp_path / "x.toml").write_text('name = "x"\nsteps = 0\n')
    with pytest.raises(InputError, match=r"preset x.steps"):
        presets.load("x", tmp_path)
    (tmp_path / "y.toml").write_text('name = "y"\ncolour = 1\n')
    with pytest.raises(InputError, match="unknown field 'colour'"):
        presets.load("y", tmp_path)
