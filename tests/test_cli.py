"""The `cinepatch` CLI: real mp4s with sidecars, exact regeneration, and clean refusals of bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main

FAST = ["--backend", "reference", "--steps", "2"]


def run(*args, cwd=None):
    """The CLI in a fresh process, as a person runs it."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})


def test_t2v_writes_mp4_and_sidecar_and_regenerates_exactly(tmp_path):
    from engine.video_io import probe, read_video
    out = tmp_path / "a.mp4"
    assert main(["t2v", "a red ball", "--duration", "1", "--fps", "8", "--out", str(out), *FAST]) == 0
    info = probe(out)
    assert (info.width, info.height, info.n_frames, info.fps) == (112, 64, 8, 8)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["backend"] == "reference" and meta["settings"]["steps"] == 2 and isinstance(meta["seed"], int)  # drawn, and recorded
    again = tmp_path / "b.mp4"
    assert main(["generate", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert np.array_equal(read_video(out), read_video(again))


def test_variations_get_their_own_files_and_seeds(tmp_path):
    out = tmp_path / "v.mp4"
    assert main(["t2v", "a ball", "--duration", "0.5", "--variations", "2", "--seed", "5", "--out", str(out), *FAST]) == 0
    seeds = [json.loads((tmp_path / f"v_v{k}.json").read_text())["seed"] for k in (0, 1)]
    assert seeds == [5, 6]


def test_every_verb_runs(tmp_path, make_video, make_image):
    clip, img = make_video("c.mp4", n=12, fps=8, w=112, h=64), make_image("i.png", w=112, h=64)
    clip2 = make_video("d.mp4", n=12, fps=8, w=112, h=64, seed=3)
    verbs = [
        ["i2v", img, "--prompt", "a ball", "--duration", "1", "--fps", "8"],
        ["remix", clip, "--prompt", "a box", "--amount", "0.5"],
        ["blend", clip, clip2, "--curve", "0:0,0.4:0,0.6:1,1:1"],
        ["loop", clip, "--bridge", "0.5", "--context", "0.25"],
        ["extend", clip, "--seconds", "0.5", "--direction", "backward"],
        ["loop", clip, "--bridge", "0.5", "--context", "0.25", "--section", "0.25:1.25"],
    ]
    from engine.video_io import probe
    frames = [8, 12, 12, 12 + 4, 4 + 12, 8 + 4]  # i2v 1 s; remix, blend: the clip; loop: clip (section) + bridge;
    #                                            extend: new + clip
    for k, (v, n) in enumerate(zip(verbs, frames)):
        out = tmp_path / f"o{k}.mp4"
        assert main([*v, "--out", str(out), *FAST]) == 0, v
        assert probe(out).n_frames == n, v
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["backend"] == "reference" and meta["frames"] == n and meta["storyboard"]["cards"]
    assert main(["recut", clip, "--trim", "0.25:1", "--fps", "4", "--out", str(tmp_path / "r.gif")]) == 0
    assert probe(tmp_path / "r.gif").n_frames == 3


def test_plan_prints_the_table(tmp_path):
    root = Path(__file__).parent.parent
    r = run("plan", root / "examples" / "story.json", "--backend", "reference")
    assert r.returncode == 0, r.stderr
    assert "latent frames" in r.stdout and "cards[2]" in r.stdout


BAD = [
    (["t2v", "x", "--duration", "0"], "duration_s"),
    (["t2v", "x", "--duration", "36000"], "duration_s"),
    (["t2v", "x", "--aspect", "wide"], "aspect"),
    (["t2v", "x", "--backend", "nope"], "backend"),
    (["t2v", "x", "--backend", "ltx", "--model", "no/such/folder"], "model: no/such/folder is missing"),
    (["t2v", "x", "--model", "no/such/folder"], "model: --model is for real-model backends"),
    (["i2v", "missing.png"], "image"),
    (["remix", "missing.mp4", "--amount", "0.5"], "video"),
    (["remix", "{clip}", "--amount", "1.5"], "amount"),
    (["blend", "{clip}", "{clip}", "--curve", "0:0,0.5:nan,1:1"], "curve[1]"),
    (["blend", "{clip}", "{clip}", "--curve", "0:0,2:1"], "curve[1]"),
    (["recut", "{clip}", "--trim", "3:9"], "trim"),
    (["loop", "{clip}", "--section", "1:0.5"], "section: 1:0.5 is not inside the clip"),
    (["loop", "{clip}", "--section", "0.5"], "section: '0.5' is not IN:OUT"),
    (["generate", "{bad_json}"], "storyboard: not valid JSON"),
    (["generate", "{bad_kind}"], "cards[0].kind"),
    (["generate", "{one_px}"], "cards[0].path"),
    (["generate", "{corrupt}"], "cards[0].path"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, make_video, args, needle):
    from PIL import Image
    clip = make_video("c.mp4", n=12, fps=8)
    (tmp_path / "bad.json").write_text('{"duration_s": 1,,}')
    (tmp_path / "kind.json").write_text(json.dumps({"duration_s": 1, "cards": [{"kind": "sound"}]}))
    Image.new("RGB", (1, 1)).save(tmp_path / "1px.png")
    (tmp_path / "px.json").write_text(json.dumps({"duration_s": 1, "cards": [{"kind": "image", "at_s": 0, "path": "1px.png"}]}))
    (tmp_path / "broken.mp4").write_bytes(os.urandom(4000))
    (tmp_path / "corrupt.json").write_text(json.dumps(
        {"duration_s": 1, "cards": [{"kind": "video", "start_s": 0, "end_s": 1, "path": "broken.mp4"}]}))
    subst = {"{clip}": clip, "{bad_json}": tmp_path / "bad.json", "{bad_kind}": tmp_path / "kind.json",
             "{one_px}": tmp_path / "px.json", "{corrupt}": tmp_path / "corrupt.json"}
    args = [str(subst.get(a, a)) for a in args]
    before = sorted(os.listdir(tmp_path))
    r = run(*args, "--out", tmp_path / "out.mp4", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == before                       # no partial output, nothing else


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "a.mp4"
    out.write_bytes(b"precious")
    r = run("t2v", "a ball", "--duration", "0.5", "--out", out, *FAST)
    assert r.returncode == 2 and "--overwrite" in r.stderr and out.read_bytes() == b"precious"
    assert main(["t2v", "a ball", "--duration", "0.5", "--out", str(out), "--overwrite", *FAST]) == 0
    assert out.read_bytes() != b"precious"


def test_bad_outputs_are_refused_before_any_work(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    cases = [(tmp_path / "b.mov", "unsupported extension"), (tmp_path / "a.mp4" / "x.mp4", "is a file, not a folder"),
             (tmp_path / "missing" / "x.mp4", "does not exist")]
    for out, needle in cases:
        before = sorted(os.listdir(tmp_path))
        r = run("t2v", "a ball", "--duration", "0.5", "--out", out, "--backend", "reference", "--steps", "1")
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("flags,needle", [(["--variations", "0"], "variations"), (["--seed", "-1"], "seed"),
                                          (["--steps", "abc"], "--steps"), (["--solver", "rk4"], "--solver")])
def test_bad_flags_exit_2_on_one_line(tmp_path, flags, needle):
    story = Path(__file__).parent.parent / "examples" / "text.json"
    r = run("generate", story, "--out", tmp_path / "o.mp4", "--backend", "reference", *flags)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.listdir(tmp_path)


def test_the_sidecar_never_replaces_the_storyboard(tmp_path):
    story = tmp_path / "s.json"
    story.write_text((Path(__file__).parent.parent / "examples" / "text.json").read_text())
    r = run("generate", story, "--out", tmp_path / "s.mp4", "--overwrite", "--backend", "reference")
    assert r.returncode == 2 and "would replace the storyboard" in r.stderr
    assert json.loads(story.read_text())["cards"][0]["kind"] == "text"


def test_a_prompt_that_is_not_utf8_still_renders(tmp_path):
    out = tmp_path / "u.mp4"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "t2v", b"a red \xff ball", "--duration", "0.5",
                        "--resolution", "32", "--out", str(out), *FAST], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert r.returncode == 0, r.stderr and out.exists()


def test_variation_k_regenerates_from_its_own_sidecar(tmp_path):
    from engine.video_io import read_video
    out = tmp_path / "v.mp4"
    assert main(["t2v", "a ball", "--duration", "0.5", "--variations", "2", "--out", str(out), *FAST]) == 0
    again = tmp_path / "again.mp4"
    assert main(["generate", str(tmp_path / "v_v1.json"), "--out", str(again)]) == 0
    a, b = read_video(tmp_path / "v_v1.mp4").astype(int), read_video(again).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2   # batched vs alone: equal up to float rounding
