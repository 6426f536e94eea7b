"""Issue 19 over HTTP against a real studio: raw paths (finding 2), request limits (4), damaged and planted
library files (6) and the smaller findings (8). Each test failed before its fix."""
import json
import os
import subprocess
import sys

import httpx
import pytest

from engine.params import LIMITS
from tests.conftest import StudioServer, ramp_clip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = StudioServer(tmp_path_factory.mktemp("sec") / "home", max_upload_mb=1).start()
    yield server
    server.stop()


def make_video(server) -> tuple[str, dict]:
    """A finished 1 s video made through the API (one step) -> (its id, its library row)."""
    import time
    from studio.library import Library
    vid = post(server, "videos", {"prompt": "a red ball", "seconds": "1", "size": "64x64", "steps": 1}).json()["id"]
    for _ in range(600):
        status = httpx.get(f"{server.url}/v1/videos/{vid}", timeout=30).json()["status"]
        if status in ("completed", "failed"):
            break
        time.sleep(0.2)
    assert status == "completed", status
    return vid, Library(server.home).videos_of_job(int(vid.split("_")[1]))[0]


@pytest.fixture(scope="module")
def made(server):
    return make_video(server)


def post(server, path, body, **kw):
    return httpx.post(f"{server.url}/v1/{path}", json=body, timeout=60, **kw)


def error_of(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    return r.json()["error"]


# ----------------------------------------------------------------------------- finding 2: no path in any request
def _stories(path: str) -> dict[str, dict]:
    base = {"duration_s": 1.0, "fps": 12, "aspect": "1:1", "resolution": 64}
    return {
        "cards[0].path": dict(base, cards=[{"kind": "video", "start_s": 0, "end_s": 1, "path": path}]),
        "cards[1].path": dict(base, cards=[{"kind": "text", "start_s": 0, "end_s": 1, "text": "a red ball"},
                                           {"kind": "image", "at_s": 0, "path": path}]),
        "assemble[1].source": dict(base, cards=[{"kind": "text", "start_s": 0, "end_s": 1, "text": "a red ball"}],
                                   assemble=[{"source": "generated", "in_s": 0, "out_s": 1},
                                             {"source": path, "in_s": 0, "out_s": 0.5}]),
    }


def test_storyboard_media_are_library_references_only(server, made, tmp_path):
    real = tmp_path / "real.mp4"
    from engine.video_io import write_video
    write_video(real, ramp_clip(12), 12)
    paths = [str(real), str(tmp_path / "missing.mp4"), "../../real.mp4", "~/real.mp4", "file:///etc/passwd",
             made[1]["path"]]   # even a file of the library itself, named by path
    for field in _stories("x"):
        messages = set()
        for p in paths:
            err = error_of(post(server, "cinepatch/storyboard", {"storyboard": _stories(p)[field]}), 400)
            assert field in err["message"] and err["param"] == f"storyboard.{field}", err
            messages.add(err["message"].replace(repr(p[:60]), "PATH"))
        assert len(messages) == 1, messages   # an existing file and a missing one get the same answer
    # the control: the same storyboards with the video's id are made
    for field, story in _stories(made[0]).items():
        r = post(server, "cinepatch/storyboard", {"storyboard": story, "steps": 1})
        assert r.status_code == 200, (field, r.text[:300])


def test_the_pages_storyboard_endpoint_refuses_paths_too(server, tmp_path):
    from engine.video_io import write_video
    real = write_video(tmp_path / "real.mp4", ramp_clip(12), 12)
    for field, story in _stories(str(real)).items():
        r = httpx.post(f"{server.url}/gradio_api/call/storyboard", json={"data": [{"storyboard": story}, []]},
                       timeout=30)
        stream = httpx.get(f"{server.url}/gradio_api/call/storyboard/{r.json()['event_id']}", timeout=60).text
        assert "event: error" in stream and field in stream and "event: complete" not in stream, stream[:300]


# ----------------------------------------------------------------------------- finding 4: bounded requests
def test_limits_are_refused_at_submit_naming_the_field_and_the_limit(server, made):
    too_long = LIMITS["seconds"].max + 1
    cases = [
        ("seconds", "videos", {"prompt": "x", "seconds": str(too_long), "size": "64x64"}),
        ("prompt", "videos", {"prompt": "x" * int(LIMITS["prompt_chars"].max + 1)}),
        ("storyboard.cards", "cinepatch/storyboard", {"storyboard": {
            "duration_s": 1.0, "cards": [{"kind": "text", "start_s": 0, "end_s": 1, "text": "x"}]
            * int(LIMITS["cards"].max + 1)}}),
        ("storyboard.duration_s", "cinepatch/storyboard", {"storyboard": {"duration_s": too_long, "cards": []}}),
        ("curve", "cinepatch/blend", {"a": made[0], "b": made[0],
                                      "curve": [[k / 1000, 0.5] for k in range(int(LIMITS["curve_points"].max) + 1)]}),
        ("seconds", "videos/extensions", {"video": {"id": made[0]}, "prompt": "", "seconds": str(too_long)}),
    ]
    for field, path, body in cases:
        err = error_of(post(server, path, body), 400)
        assert err["param"] == field and err["message"].startswith(field + ":"), (field, err)
        limits = [f"{lim.max:g}" for lim in LIMITS.values()]
        assert any(f" {n} " in err["message"] or f"({n} " in err["message"] for n in limits), err   # says the limit


def test_a_huge_json_body_is_refused_before_it_is_read(server, made):
    points = [[k / 10**6, 0.5] for k in range(10**6)]
    r = post(server, "cinepatch/blend", {"a": made[0], "b": made[0], "curve": points})
    err = error_of(r, 413)
    assert err["param"] == "body" and "KB" in err["message"]
    listed = httpx.get(f"{server.url}/v1/videos", timeout=30)        # nothing of it was stored
    assert listed.status_code == 200 and len(listed.content) < 200_000


def test_limits_are_in_the_schema_and_served(server):
    schema = json.dumps(httpx.get(f"{server.url}/v1/openapi.json", timeout=30).json())
    assert f"at most {LIMITS['curve_points'].max:g} points" in schema and f"at most {LIMITS['seconds'].max:g}" in schema
    served = httpx.get(f"{server.url}/v1/cinepatch/limits", timeout=30).json()
    assert {k: v["max"] for k, v in served.items()} == {k: v.max for k, v in LIMITS.items()}


def test_memory_estimate_refuses_a_video_too_big_for_the_server():
    """The toy backend's estimate (40 KB a latent cell): a minute at 1024 px is refused, 2 s at 64 px is not."""
    from engine.backends.toy.backend import toy_spec
    from engine.params import InputError
    from engine.requests import build
    spec = toy_spec()
    build("generate", {"prompt": "x", "duration_s": 2.0, "resolution": 64}, spec=spec)
    with pytest.raises(InputError) as e:
        build("generate", {"prompt": "x", "duration_s": 30.0, "resolution": 1024}, spec=spec)
    assert str(e.value).startswith("resolution:") and "GB" in str(e.value)


# ----------------------------------------------------------------------------- finding 6: damaged and planted files
def test_damaged_and_planted_library_files_are_4xx_not_500(server, made, tmp_path):
    vid, row = make_video(server)
    path = row["path"]
    with open(path, "r+b") as f:
        f.truncate(200)                                              # a crash or a disk error left it short
    base = f"{server.url}/v1/videos/{vid}/content"
    for variant in ("spritesheet", "thumbnail", "video"):
        r = httpx.get(base, params={"variant": variant}, timeout=60)
        assert r.status_code in (200, 404), (variant, r.status_code, r.text[:200])
        if variant == "spritesheet":
            assert error_of(r, 404)["param"] == "variant"
    secret = tmp_path / "secret.txt"
    secret.write_text("planted")
    os.remove(path)
    os.symlink(secret, path)                                         # a link planted where the video was
    r = httpx.get(base, timeout=30)
    assert r.status_code == 404 and b"planted" not in r.content


# ----------------------------------------------------------------------------- finding 8: the smaller ones
def test_seconds_zero_and_true_are_errors_not_defaults(server):
    for value in (0, "0", True, False):
        err = error_of(post(server, "videos", {"prompt": "x", "seconds": value, "size": "64x64"}), 400)
        assert err["param"] == "seconds", (value, err)


def test_error_params_are_the_fields_a_client_sent(server, made):
    err = error_of(post(server, "videos/extensions", {"prompt": "", "seconds": "1", "video": {"id": 5}}), 400)
    assert err["param"] == "video.id", err
    err = error_of(post(server, "videos", {"prompt": "x", "seconds": [1]}), 400)
    assert err["param"] == "seconds", err
    bad = httpx.post(f"{server.url}/v1/cinepatch/loop", content=b'{"video": "video_1",,}',
                     headers={"content-type": "application/json"}, timeout=30)
    assert error_of(bad, 400)["param"] == "body"
    err = error_of(post(server, "cinepatch/blend", {"a": "video_999999", "b": made[0], "curve": "0:0,1:1"}), 404)
    assert err["param"] == "a", err
    padded = made[0].replace("video_", "video_000")
    assert error_of(httpx.get(f"{server.url}/v1/videos/{padded}", timeout=30), 404)["param"] == "video_id"


def test_cli_refuses_a_storyboard_nested_too_deep_in_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "generate", str(deep), "--out", str(tmp_path / "o.mp4")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_errors_name_media_by_reference_not_by_server_path(server, made):
    story = {"duration_s": 1.0, "fps": 12, "aspect": "1:1", "resolution": 64,
             "cards": [{"kind": "video", "start_s": 0, "end_s": 1, "path": made[0], "source_in_s": 30}]}
    err = error_of(post(server, "cinepatch/storyboard", {"storyboard": story}), 400)
    assert "source_in_s" in err["param"] and "past the end" in err["message"], err
    assert str(server.home) not in err["message"] and "/videos/" not in err["message"], err


def test_key_guesses_are_throttled_and_gradio_docs_need_the_key(tmp_path):
    server = StudioServer(tmp_path / "home", env={"CINEPATCH_API_KEY": "right-key-123"}).start()
    try:
        assert error_of(httpx.get(f"{server.url}/openapi.json", timeout=30), 401)["code"] == "invalid_api_key"
        statuses = [httpx.get(f"{server.url}/v1/videos", headers={"Authorization": f"Bearer guess-{k}"},
                              timeout=30).status_code for k in range(12)]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses
        r = httpx.get(f"{server.url}/v1/videos", headers={"Authorization": "Bearer right-key-123"}, timeout=30)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1   # not even checked while throttled
        login = httpx.post(f"{server.url}/login", data={"username": "u", "password": "guess"}, timeout=30)
        assert login.status_code == 429
    finally:
        server.stop()


def test_throttle_allows_a_burst_then_one_guess_per_interval():
    from studio.videos_api import Throttle
    now = [0.0]
    t = Throttle(clock=lambda: now[0])
    for _ in range(Throttle.BURST):
        assert t.wait_s("a") == 0
        t.failed("a")
    assert t.wait_s("a") == pytest.approx(Throttle.EVERY) and t.wait_s("b") == 0   # per client
    now[0] += Throttle.EVERY
    assert t.wait_s("a") == 0
    t.failed("a")
    assert t.wait_s("a") > 0
    now[0] += Throttle.EVERY * (Throttle.BURST + 1)                      # long quiet: the full burst again
    t.failed("b")
    assert t.wait_s("a") == 0 and "a" not in t.spent                     # forgotten once owed nothing


def test_the_pages_cancel_stops_the_chosen_job_not_the_newest(server):
    """Finding 5's last item: Cancel used to stop the newest running job of any backend, whoever started it."""
    slow = {"prompt": "a slow one", "seconds": "2", "size": "64x64", "steps": 200}
    a, b = (post(server, "videos", slow).json()["id"] for _ in range(2))
    job_b = int(b.split("_")[1])
    r = httpx.post(f"{server.url}/gradio_api/call/on_cancel", json={"data": [job_b, None]}, timeout=30)
    stream = httpx.get(f"{server.url}/gradio_api/call/on_cancel/{r.json()['event_id']}", timeout=60).text
    assert "event: complete" in stream, stream[:300]
    for _ in range(300):
        if httpx.get(f"{server.url}/v1/videos/{b}", timeout=30).json()["status"] == "failed":
            break
        __import__("time").sleep(0.2)
    got = {v: httpx.get(f"{server.url}/v1/videos/{v}", timeout=30).json() for v in (a, b)}
    assert got[b]["error"]["code"] == "cancelled", got[b]
    assert got[a]["status"] in ("queued", "in_progress"), got[a]        # the other job goes on
    httpx.delete(f"{server.url}/v1/videos/{a}", timeout=180)


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                                               "can't allocate memory: you tried to allocate 15240000000 bytes")])
def test_cli_says_out_of_memory_in_one_line(monkeypatch, capsys, error):
    from engine import cli

    def too_big(a):
        raise error
    monkeypatch.setitem(cli.VERBS, "plan", too_big)
    assert cli.main(["plan", "story.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory" in err and "Traceback" not in err


def test_cli_other_runtime_errors_are_not_hidden(monkeypatch):
    from engine import cli

    def broken(a):
        raise RuntimeError("a bug")
    monkeypatch.setitem(cli.VERBS, "plan", broken)
    with pytest.raises(RuntimeError):
        cli.main(["plan", "story.json"])


def test_deleting_a_running_job_frees_nothing_for_reuse(server):
    """Finding 3 and 5 over HTTP: DELETE of a running job cancels it without waiting for the worker; the next
    job gets a new id, and the deleted job's video never turns up under any id."""
    import time
    slow = post(server, "videos", {"prompt": "a long one", "seconds": "2", "size": "64x64", "steps": 200}).json()["id"]
    for _ in range(600):
        if httpx.get(f"{server.url}/v1/videos/{slow}", timeout=30).json()["status"] == "in_progress":
            break
        time.sleep(0.1)
    gone = httpx.delete(f"{server.url}/v1/videos/{slow}", timeout=30).json()
    assert gone == {"id": slow, "object": "video.deleted", "deleted": True} or gone["deleted"] is True, gone
    new_id, row = make_video(server)
    assert int(new_id.split("_")[1]) > int(slow.split("_")[1])
    assert row["duration_s"] == pytest.approx(1.0, abs=0.1)                     # its own 1 s clip, not the 2 s one
    assert httpx.get(f"{server.url}/v1/videos/{slow}", timeout=30).status_code == 404
    again = httpx.delete(f"{server.url}/v1/videos/{slow}", timeout=30)           # a retried DELETE touches nothing
    assert again.status_code == 404 and httpx.get(f"{server.url}/v1/videos/{new_id}", timeout=30).status_code == 200


def test_memory_limit_over_http_names_the_field(server):
    story = {"duration_s": 30.0, "fps": 12, "aspect": "1:1", "resolution": 1024,
             "cards": [{"kind": "text", "start_s": 0, "end_s": 30, "text": "a red ball"}]}
    err = error_of(post(server, "cinepatch/storyboard", {"storyboard": story}), 400)
    assert err["param"] == "storyboard.resolution" and f"({LIMITS['memory_gb'].max:g} GB" in err["message"], err
    ok = post(server, "cinepatch/storyboard", {"storyboard": dict(story, resolution=64), "steps": 1})
    assert ok.status_code == 200                                      # the same minute at 64 px fits
    httpx.delete(f"{server.url}/v1/videos/{ok.json()['id']}", timeout=30)


def test_a_job_out_of_memory_fails_alone(tmp_path):
    """Finding 4: a job that runs out of memory fails, saying so in words, and the next job is made."""
    from engine.backends.reference import ReferenceBackend
    from engine.params import OUT_OF_MEMORY
    from studio.jobs import Jobs
    from studio.library import Library

    class Hungry(ReferenceBackend):
        def denoise(self, x, t, text, gate):   # x (B, C, F, h, w): long clips "need" more than there is
            if x.shape[2] > 5:
                raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
            return super().denoise(x, t, text, gate)
    lib = Library(tmp_path / "home")
    q = Jobs(lib, "reference", loader=Hungry)
    req = {"prompt": "a red ball", "resolution": 32, "steps": 1, "seed": 1}
    big = q.submit("generate", dict(req, duration_s=2.0))
    small = q.submit("generate", dict(req, duration_s=0.25))
    failed = q.wait(big, 300)
    assert failed["state"] == "failed" and failed["error"] == OUT_OF_MEMORY
    assert q.wait(small, 300)["state"] == "done" and len(lib.videos_of_job(small)) == 1
