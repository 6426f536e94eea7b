"""The Videos API (studio/videos_api.py), driven over HTTP by the official `openai` package against a live studio.

Jobs are kept tiny (1 or 2 steps, 64-128 px) so the whole file stays well under two minutes on a CPU.
"""
import io
import json
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from engine.video_io import read_video
from tests.conftest import StudioServer

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")  # the SDK marks videos.* so

FAST = {"steps": 1}
TERMINAL = ("completed", "failed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = StudioServer(tmp_path_factory.mktemp("api") / "home", max_upload_mb=1).start()
    yield server
    server.stop()


def client_for(server, **kw) -> "openai.OpenAI":
    return openai.OpenAI(base_url=server.url + "/v1", api_key=kw.pop("api_key", "unused"), **kw)


@pytest.fixture(scope="module")
def client(server):
    return client_for(server)


@pytest.fixture(scope="module")
def clip(client):
    """One finished 1 s video, 16:9, made through the `sora-2` alias."""
    return client.videos.create_and_poll(prompt="a red circle moving left on black", model="sora-2", seconds="1",
                                         size="1280x720", poll_interval_ms=100, extra_body=FAST)


def rows(server, sql, *args):
    """Read the studio's own library as it stands, through a read-only SQLite connection."""
    with sqlite3.connect(f"file:{server.home / 'library.sqlite'}?mode=ro", uri=True) as c:
        return c.execute(sql, args).fetchall()


def wait_all(client, ids) -> dict:
    out = {}
    for vid in ids:
        out[vid] = client.videos.poll(vid, poll_interval_ms=100)
    return out


def frames_of(data: bytes, tmp_path, name="v.mp4") -> np.ndarray:
    (tmp_path / name).write_bytes(data)
    return read_video(tmp_path / name)


def api_error(r: httpx.Response, status: int) -> dict:
    """The response is the API's error shape with this status (and no traceback)."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] and "\n" not in err["message"]
    return err


# ----------------------------------------------------------------------------- the openai client, end to end
def test_create_and_poll_then_content_is_a_real_mp4_thumbnail_and_spritesheet(client, clip, server, tmp_path):
    from studio.app import BACKEND_RESOLUTIONS
    assert clip.status == "completed" and clip.progress == 100 and clip.error is None
    assert clip.model == "toy" and clip.seconds == "1" and clip.prompt.startswith("a red circle")
    w, h = map(int, clip.size.split("x"))
    assert h in BACKEND_RESOLUTIONS["toy"] and abs(w / h - 16 / 9) < 0.15      # 1280x720 snapped, aspect kept
    assert clip.completed_at >= clip.created_at and client.videos.retrieve(clip.id) == clip

    frames = frames_of(client.videos.download_content(clip.id).content, tmp_path)
    assert frames.shape == (12, h, w, 3)                                         # 1 s at 12 fps, the size reported
    thumb = Image.open(io.BytesIO(client.videos.download_content(clip.id, variant="thumbnail").content))
    assert thumb.format == "JPEG" and thumb.size == (w, h)
    sheet = Image.open(io.BytesIO(client.videos.download_content(clip.id, variant="spritesheet").content))
    sheet.load()
    assert sheet.format == "JPEG" and sheet.width % w == 0 and sheet.height % h == 0
    assert sheet.width * sheet.height >= 10 * w * h                              # ten frames, not one
    # The studio's Library holds it: the job's video row and its file.
    (n,) = rows(server, "SELECT COUNT(*) FROM videos WHERE job_id=?", int(clip.id.split("_")[1]))[0]
    assert n == 1


def test_jobs_made_in_the_page_are_listed_and_paging_walks_every_video(client, server):
    body = {"data": [{"prompt": "a blue square", "duration_s": 0.5, "resolution": 64, "steps": 1}, []]}
    event = httpx.post(f"{server.url}/gradio_api/call/generate", json=body, timeout=30).json()["event_id"]
    stream = httpx.get(f"{server.url}/gradio_api/call/generate/{event}", timeout=120).text
    page_job = json.loads(stream.split("event: complete\ndata: ", 1)[1].splitlines()[0])[0]["job"]
    made = [client.videos.create(prompt=f"clip {k}", seconds="0.5", size="64x64", extra_body=FAST).id for k in range(3)]

    everything = [v.id for v in client.videos.list(limit=2)]                     # the SDK follows last_id / has_more
    assert f"video_{page_job}" in everything and set(made) <= set(everything)
    numbers = [int(i.split("_")[1]) for i in everything]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)
    asc = [v.id for v in client.videos.list(limit=3, order="asc")]
    assert asc == everything[::-1]
    first = client.videos.list(limit=2, order="asc")
    assert first.has_more and [v.id for v in first.data] == asc[:2]
    second = client.videos.list(limit=2, order="asc", after=first.data[-1].id)
    assert [v.id for v in second.data] == asc[2:4]
    wait_all(client, made)


def test_remix_extend_and_delete(client, clip, server, tmp_path):
    remix = client.videos.remix(clip.id, prompt="a blue square moving right", extra_body=FAST)
    assert remix.status in ("queued", "in_progress") and remix.remixed_from_video_id == clip.id
    # The SDK uploads the clip to extend; a JSON client may name a video by id instead.
    mp4 = client.videos.download_content(clip.id).content
    ext = client.videos.extend(video=("clip.mp4", mp4, "video/mp4"), prompt="it keeps going", seconds="1",
                               extra_body=FAST)
    by_id = httpx.post(f"{server.url}/v1/videos/extensions", timeout=30,
                       json={"video": {"id": clip.id}, "prompt": "it keeps going", "seconds": "1", **FAST}).json()
    done = wait_all(client, [remix.id, ext.id, by_id["id"]])
    assert all(v.status == "completed" for v in done.values()), done
    assert done[remix.id].size == clip.size and done[remix.id].remixed_from_video_id == clip.id
    for vid in (ext.id, by_id["id"]):
        assert done[vid].seconds == "2"                                          # the stitched total: 1 s + 1 s
        frames = frames_of(client.videos.download_content(vid).content, tmp_path, f"{vid}.mp4")
        assert len(frames) == 24
    original = frames_of(mp4, tmp_path)
    stitched = frames_of(client.videos.download_content(by_id["id"]).content, tmp_path, "s.mp4")
    assert np.abs(stitched[:12].astype(int) - original.astype(int)).mean() < 3   # the source clip comes first, as is

    gone = client.videos.delete(remix.id)
    assert gone.deleted and gone.id == remix.id and gone.object == "video.deleted"
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(remix.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(remix.id)
    assert rows(server, "SELECT COUNT(*) FROM videos WHERE job_id=?", int(remix.id.split("_")[1]))[0][0] == 0


def test_input_reference_image_is_pinned_at_the_first_frame(client, server, tmp_path):
    img = np.zeros((72, 128, 3), np.uint8)
    img[:, :64] = (220, 40, 40)                                                  # left half red, right half black
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    v = client.videos.create_and_poll(prompt="a still frame", input_reference=("ref.png", buf.getvalue(), "image/png"),
                                      seconds="1", size="128x72", poll_interval_ms=100, extra_body=FAST)
    assert v.status == "completed"
    (story,) = rows(server, "SELECT storyboard FROM videos WHERE job_id=?", int(v.id.split("_")[1]))[0]
    card = next(c for c in json.loads(story)["cards"] if c["kind"] == "image")
    assert card["at_s"] == 0
    first = frames_of(client.videos.download_content(v.id).content, tmp_path)[0].astype(int)
    w = first.shape[1]
    assert first[:, : w // 2, 0].mean() > first[:, w // 2:, 0].mean() + 60     # the red half is still on the left


def test_cinepatch_storyboard_blend_and_loop(client, clip, server):
    schema = httpx.get(f"{server.url}/v1/openapi.json", timeout=30).json()
    assert {"/v1/cinepatch/storyboard", "/v1/cinepatch/blend", "/v1/cinepatch/loop", "/v1/videos",
            "/v1/videos/{video_id}/content", "/v1/videos/extensions"} <= set(schema["paths"])
    post = lambda path, body: httpx.post(f"{server.url}/v1/cinepatch/{path}", json={**body, **FAST}, timeout=30)  # noqa: E731
    story = {"duration_s": 1.0, "fps": 12, "aspect": "1:1", "resolution": 64,
             "cards": [{"kind": "video", "start_s": 0, "end_s": 0.5, "path": clip.id, "strength": 1.0},
                       {"kind": "text", "start_s": 0.5, "end_s": 1.0, "text": "a yellow square"}]}
    made = {"storyboard": post("storyboard", {"storyboard": story}),
            "blend": post("blend", {"a": clip.id, "b": clip.id, "curve": [[0, 0], [1, 1]]}),
            "loop": post("loop", {"video": clip.id, "bridge_s": 0.5})}
    assert all(r.status_code == 200 for r in made.values()), {k: r.text for k, r in made.items()}
    done = wait_all(client, [r.json()["id"] for r in made.values()])
    assert all(v.status == "completed" for v in done.values()), done
    by_op = {op: done[r.json()["id"]] for op, r in made.items()}
    assert by_op["storyboard"].size == "64x64" and by_op["storyboard"].seconds == "1"
    assert by_op["loop"].seconds == "1.5"                                        # clip + bridge
    bad = post("storyboard", {"storyboard": dict(story, cards=[dict(story["cards"][0], path="/etc/passwd")])})
    assert "cards[0].path" in api_error(bad, 400)["message"]


# ----------------------------------------------------------------------------- errors
def test_errors_have_the_api_shape_and_status(client, server):
    base = f"{server.url}/v1"
    for vid in ("video_999999", "nope", "video_1x", "..%2f..%2fetc%2fpasswd", "%2fetc%2fpasswd", "video_-1"):
        assert api_error(httpx.get(f"{base}/videos/{vid}", timeout=30), 404)
        assert api_error(httpx.get(f"{base}/videos/{vid}/content", timeout=30), 404)
    assert api_error(httpx.delete(f"{base}/videos/video_999999", timeout=30), 404)["code"] == "not_found"
    # a known path with the wrong method is a 405 that names the methods it takes; an unknown path a 404
    wrong = httpx.put(f"{base}/videos/video_1", timeout=30)
    assert api_error(wrong, 405)["code"] == "method_not_allowed"
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "DELETE"}
    assert api_error(httpx.patch(f"{base}/videos", timeout=30), 405)["param"] == "method"
    assert api_error(httpx.put(f"{base}/nothing/here", timeout=30), 404)["code"] == "unknown_url"
    for origin in ("https://evil.example", "null"):                              # no CORS grant to other pages
        r = httpx.get(f"{base}/videos", headers={"Origin": origin}, timeout=30)
        assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    cases = {"size": {"prompt": "x", "size": "big"}, "size ": {"prompt": "x", "size": "100x1000"},
             "seconds": {"prompt": "x", "seconds": "0"}, "seconds ": {"prompt": "x", "seconds": "ten"},
             "prompt": {"prompt": ""}, "prompt ": {"size": "64x64"}, "model": {"prompt": "x", "model": "gpt-9"},
             "steps": {"prompt": "x", "steps": 1000}, "colour": {"prompt": "x", "colour": "red"}}
    for field, body in cases.items():
        err = api_error(httpx.post(f"{base}/videos", json=body, timeout=30), 400)
        assert err["message"].startswith(field.strip() + ":") and err["param"] == field.strip(), err
    assert api_error(httpx.get(f"{base}/videos", params={"limit": 0}, timeout=30), 400)["param"] == "limit"
    assert api_error(httpx.get(f"{base}/videos", params={"after": "../x"}, timeout=30), 400)["param"] == "after"
    not_media = httpx.post(f"{base}/videos", data={"prompt": "x"}, files={"input_reference": ("a.png", b"not an image")},
                           timeout=30)
    assert api_error(not_media, 400)["param"] == "input_reference"
    big = httpx.post(f"{base}/videos", data={"prompt": "x"}, timeout=60,
                     files={"input_reference": ("a.png", b"\0" * (server.max_upload_mb * 2**20 + 2**17))})
    assert api_error(big, 413)["code"] == "file_too_large"
    with pytest.raises(openai.BadRequestError):
        client.videos.create(prompt="x", size="0x0")
    # The content of a job still waiting is a conflict (the SDK retries 409s: none here).
    waiting = client.videos.create(prompt="slow", seconds="2", size="64x64", extra_body={"steps": 40})
    strict = client_for(server, max_retries=0)
    with pytest.raises(openai.ConflictError):
        strict.videos.download_content(waiting.id)
    assert api_error(httpx.post(f"{base}/videos/{waiting.id}/remix", json={"prompt": "x"}, timeout=30), 409)
    client.videos.delete(waiting.id)                                             # cancelled and gone
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(waiting.id)


def test_api_key_is_required_when_set_and_other_hosts_need_one(tmp_path):
    cmd = [sys.executable, "-m", "studio", "--home", str(tmp_path / "h0"), "--host", "0.0.0.0", "--port", "1"]
    env = {k: v for k, v in __import__("os").environ.items() if k != "CINEPATCH_API_KEY"}
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and "api-key" in refused.stderr and "Traceback" not in refused.stderr

    server = StudioServer(tmp_path / "home", env={"CINEPATCH_API_KEY": "s3cret-key"}).start()
    try:
        base = server.url + "/v1"
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "s3cret-key"}):
            for r in (httpx.get(f"{base}/videos", headers=headers, timeout=30),
                      httpx.post(f"{base}/videos", json={"prompt": "x"}, headers=headers, timeout=30),
                      httpx.get(f"{base}/openapi.json", headers=headers, timeout=30)):
                assert api_error(r, 401)["code"] == "invalid_api_key"
        assert httpx.get(server.url + "/config", timeout=30).status_code == 401       # the page asks for a login
        with pytest.raises(openai.AuthenticationError):
            client_for(server, api_key="wrong-key").videos.list()
        assert client_for(server, api_key="s3cret-key").videos.list().data == []
    finally:
        server.stop()


# ----------------------------------------------------------------------------- load and restarts
def test_fifty_concurrent_creates_are_all_made_in_submission_order(client, server):
    def create(k):
        return client.videos.create(prompt=f"a green triangle {k}", seconds="0.25", size="64x64", extra_body=FAST)
    with ThreadPoolExecutor(50) as pool:
        made = list(pool.map(create, range(50)))
    ids = [int(v.id.split("_")[1]) for v in made]
    assert len(set(ids)) == 50 and all(v.status in ("queued", "in_progress", "completed") for v in made)
    done = wait_all(client, [v.id for v in made])
    assert all(v.status == "completed" for v in done.values()), [v.error for v in done.values() if v.error]
    q = ",".join("?" * 50)
    finished = [f for _, f in rows(server, f"SELECT id, finished FROM jobs WHERE id IN ({q}) ORDER BY id", *ids)]
    assert finished == sorted(finished)                                          # one queue: first in, first out
    assert rows(server, f"SELECT COUNT(*) FROM videos WHERE job_id IN ({q})", *ids)[0][0] == 50


def test_a_restart_mid_queue_keeps_every_job(server):
    client = client_for(server)
    made = [client.videos.create(prompt=f"a clip {k}", seconds="1", size="64x64", extra_body={"steps": 4}).id
            for k in range(4)]
    before = {v: client.videos.retrieve(v).status for v in made}
    assert "queued" in before.values(), before
    server.restart()                                                             # killed, as a crash would
    client = client_for(server)
    after = wait_all(client, made)                                               # none 404s
    for vid, v in after.items():
        if before[vid] == "queued":
            assert v.status == "completed", (vid, v)                             # queued jobs resume
        else:  # the one running when killed: finished, or failed saying why (the page can Retry it)
            assert v.status == "completed" or (v.error.code == "interrupted" and "Retry" in v.error.message)


def test_the_size_reported_while_queued_is_the_size_made_and_then_forgotten(tmp_path):
    """In-process: a waiting job reports the size it will be made at (worked out once, cached); once made,
    the real file's size is reported and the cached plan is dropped, so the cache does not grow with the library."""
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.videos_api import VideosApi
    lib = Library(tmp_path / "home")
    api = VideosApi(Studio(lib, Jobs(lib, "reference")))
    req = {"prompt": "a red circle", "duration_s": 1.0, **api.size_fields("100x60", None), "steps": 1}
    job_id = lib.add_job("generate", req, "a red circle", "reference")  # in the library, not in a running queue
    queued = api.video(lib.job(job_id))
    assert queued.status == "queued" and job_id in api._planned
    w, h = map(int, queued.size.split("x"))
    assert w > h and queued.seconds == "1"
    assert Jobs(lib, "reference").wait(job_id, 120)["state"] == "done"         # a restarted queue picks it up
    made = api.video(lib.job(job_id))
    assert (made.status, made.size, made.seconds) == ("completed", queued.size, queued.seconds)
    assert job_id not in api._planned


# ----------------------------------------------------------------------------- schemathesis (last: it leaves odd jobs queued)
def test_schemathesis_finds_no_server_errors(server):
    """Cases generated from the served OpenAPI schema, 25 per operation: none answered with a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    schema = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json")
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operations += 1

        @given(case=result.ok().as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def probe(case):
            r = case.call(base_url=server.url, timeout=60)
            if r.status_code >= 500:
                failures.append((case.method, case.formatted_path, r.status_code, r.text[:200]))
        probe()
    assert operations >= 10 and not failures, failures


def test_a_real_models_memory_setting_is_read_and_picked_over_the_api_as_in_the_page(tmp_path, tiny_wan_folder):
    """GET / POST /v1/cinepatch/memory: the setting a real model's next load uses, picked as the page's dropdown
    picks it; bad input is a 400 naming `memory` or `model`."""
    from fastapi.testclient import TestClient

    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.videos_api import create_app
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    http = TestClient(create_app(studio))
    assert http.get("/v1/cinepatch/memory").json() == {"wan": {"memory": "none", "pending": False}}
    r = http.post("/v1/cinepatch/memory", json={"model": "wan", "memory": "model+tiling"})
    assert r.status_code == 200 and r.json()["memory"] == "model+tiling" and "next job" in r.json()["message"]
    assert studio.queue("wan").memory == "model+tiling"                          # its next load uses it
    for body, param in (({"model": "wan", "memory": "huge"}, "memory"), ({"model": "toy", "memory": "model"}, "memory"),
                        ({"model": "nope", "memory": "model"}, "model")):
        r = http.post("/v1/cinepatch/memory", json=body)
        assert r.status_code == 400 and api_error(r, 400)["param"] == param, r.text
