"""Seeds as in every generator people know (issue 21, finding 1): a fresh seed per generation and per variation
unless one is set, the seed used recorded and reported, an explicit seed reproducing the video exactly — the
same in the Python API, the CLI, the studio's jobs and the Videos API."""
import json

import numpy as np
import pytest

from engine import ops
from engine.api import Settings, generate, render
from engine.backends.registry import load_backend
from engine.video_io import read_video

FAST = Settings(steps=2, guidance=2.0)


@pytest.fixture(scope="module")
def backend():
    return load_backend("reference")


def test_python_api_draws_a_fresh_seed_unless_one_is_set(backend, tmp_path):
    tl = ops.t2v("a red ball", 0.5, resolution=32, fps=8)
    assert tl.seed is None                                     # nothing chosen: nothing pinned
    a, b = generate(tl, backend, FAST)[0], generate(tl, backend, FAST)[0]
    assert not np.array_equal(a, b)                            # the same timeline again: a new video
    pinned = tl.replace(seed=7)
    assert np.array_equal(generate(pinned, backend, FAST)[0], generate(pinned, backend, FAST)[0])
    out = render(tl.replace(variations=2), backend, FAST, tmp_path / "v.mp4")
    seeds = [json.loads(o.with_suffix(".json").read_text())["seed"] for o in out]
    assert isinstance(seeds[0], int) and seeds[1] == seeds[0] + 1   # variation k: seed + k, the drawn one recorded
    both = generate(tl.replace(seed=seeds[0], variations=2), backend, FAST)
    alone = generate(tl.replace(seed=seeds[1]), backend, FAST)[0]   # variation 1 made alone from its seed
    assert np.array_equal(alone, both[1]) and not np.array_equal(both[0], both[1])


def test_cli_says_the_seed_and_a_run_without_one_differs(tmp_path):
    from tests.test_cli import run
    args = ["t2v", "a ball", "--duration", "0.5", "--backend", "reference", "--steps", "2", "--resolution", "32"]
    runs = [run(*args, "--out", tmp_path / f"{k}.mp4") for k in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    seeds = [json.loads((tmp_path / f"{k}.json").read_text())["seed"] for k in range(2)]
    assert seeds[0] != seeds[1] and f"seed {seeds[0]}" in runs[0].stderr
    r = run(*args, "--seed", seeds[0], "--out", tmp_path / "again.mp4")
    assert r.returncode == 0 and np.array_equal(read_video(tmp_path / "0.mp4"), read_video(tmp_path / "again.mp4"))


@pytest.fixture
def studio(tmp_path):
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    lib = Library(tmp_path / "home")
    return Studio(lib, Jobs(lib, "reference"))


REQ = {"prompt": "a red ball", "duration_s": 0.5, "resolution": 32, "fps": 8, "steps": 2}


def test_jobs_draw_per_job_and_make_again_reproduces(studio):
    from studio.app import make_again
    jobs = [studio.submit("generate", REQ) for _ in range(2)]           # a double click: two jobs
    vids = [studio.library.videos_of_job(j)[0] for j in jobs if studio.wait(j, 120)["state"] == "done"]
    assert len(vids) == 2 and vids[0]["seed"] != vids[1]["seed"]
    assert not np.array_equal(read_video(vids[0]["path"]), read_video(vids[1]["path"]))
    many = studio.submit("generate", dict(REQ, variations=2))
    assert studio.wait(many, 120)["state"] == "done"
    pair = studio.library.videos_of_job(many)
    assert pair[1]["seed"] == pair[0]["seed"] + 1                         # each variation its own seed
    new, _ = make_again(studio, pair[1]["id"])                            # the second variation, made alone
    assert studio.wait(new, 120)["state"] == "done"
    again = studio.library.videos_of_job(new)[0]
    assert again["seed"] == pair[1]["seed"] and np.array_equal(read_video(again["path"]), read_video(pair[1]["path"]))
    vids, msg = studio.result(new)
    assert vids[0]["id"] == again["id"] and f"seed {again['seed']}" in msg   # the result says its seed


def test_videos_api_reports_the_seed_and_takes_it_back(studio):
    from fastapi.testclient import TestClient

    from studio.videos_api import create_app
    client = TestClient(create_app(studio))
    body = {"prompt": "a red ball", "seconds": "1", "size": "64x64", "steps": 1}   # the default model: this studio's

    def made(extra=None):
        r = client.post("/v1/videos", json={**body, **(extra or {})})
        assert r.status_code == 200, r.text
        vid = r.json()["id"]
        studio.wait(int(vid.split("_")[1]), 120)
        v = client.get(f"/v1/videos/{vid}").json()
        assert v["status"] == "completed", v
        return v, client.get(f"/v1/videos/{vid}/content").content

    (a, a_mp4), (b, _) = made(), made()
    assert isinstance(a["seed"], int) and a["seed"] != b["seed"]
    c, c_mp4 = made({"seed": a["seed"]})
    assert c["seed"] == a["seed"] and c_mp4 == a_mp4                    # the same bytes again
