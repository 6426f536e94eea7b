"""Issue 23: the studio with its jobs on Ray — it refuses an unreachable cluster at start, its Videos API answers
exactly as with the in-process worker, and a studio restarted while Ray jobs wait runs them."""
import os
import socket
import sqlite3
import subprocess
import sys

import httpx
import pytest

ray = pytest.importorskip("ray")

from tests.conftest import StudioServer  # noqa: E402
from tests.test_ray_workers import BOUND_S, cluster, wait_for  # noqa: E402,F401  (cluster: the module's Ray)

TINY = {"prompt": "a red circle moving left on black", "seconds": "1", "size": "64x64", "steps": 2, "seed": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_unreachable_cluster_stops_the_studio_at_start_in_one_line(tmp_path, how):
    address = f"ray://127.0.0.1:{free_port()}"                   # nothing listens there
    args, env = (["--ray", address], {}) if how == "flag" else ([], {"CINEPATCH_RAY_ADDRESS": address})
    r = subprocess.run([sys.executable, "-m", "studio", "--home", str(tmp_path / "home"), *args],
                       capture_output=True, text=True, timeout=BOUND_S, env=dict(os.environ, **env))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("cinepatch: error: ray:") and address in lines[0]
    assert not (tmp_path / "home").exists()                     # refused before anything was made


def test_the_studio_without_ray_never_imports_it():
    """Ray is optional: the studio, its jobs and its in-process worker run without it (make run installs none)."""
    code = ("import sys, studio.server, studio.jobs, studio.app, studio.videos_api; "
            "from studio.jobs import Jobs; from studio.library import Library; import tempfile; "
            "Jobs(Library(tempfile.mkdtemp()), 'reference'); print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND_S)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# ----------------------------------------------------------------------------- the Videos API, in-process and on Ray
def api_session(client) -> list:
    """Create, poll, download, remix, list, refuse, delete: every answer with ids by order of appearance and
    times left out, so two studios can be compared answer for answer."""
    ids, out = {}, []

    def norm(body):
        if isinstance(body, dict):
            return {k: norm(v) for k, v in body.items() if k not in ("created_at", "completed_at", "expires_at")}
        if isinstance(body, list):
            return [norm(v) for v in body]
        if isinstance(body, str) and body.startswith("video_"):
            return ids.setdefault(body, f"video#{len(ids)}")
        return body

    def call(method, path, **kw):
        r = client.request(method, path, **kw)
        body = norm(r.json()) if "json" in r.headers["content-type"] else None
        if isinstance(body, dict) and body.get("status") in ("queued", "in_progress"):  # a worker may start it at once
            body.update(status="queued or in_progress", progress=None)
        out.append((method, norm(path), r.status_code, body or (r.headers["content-type"], len(r.content) > 1000)))
        return r.json() if body else None

    def finished(vid):
        assert wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["status"] in ("completed", "failed"))
        return call("GET", f"/v1/videos/{vid}")
    first = call("POST", "/v1/videos", json=TINY)["id"]
    finished(first)
    call("GET", f"/v1/videos/{first}/content")
    remix = call("POST", f"/v1/videos/{first}/remix", json={"prompt": "a blue square", "steps": 2, "seed": 7})["id"]
    finished(remix)
    call("GET", "/v1/videos", params={"limit": 10, "order": "asc"})
    call("POST", "/v1/videos", json=dict(TINY, seconds="999"))
    call("GET", f"/v1/videos/{first}/content", params={"variant": "thumbnail"})
    call("DELETE", f"/v1/videos/{remix}")
    call("GET", f"/v1/videos/{remix}")
    return out


def test_the_videos_api_answers_the_same_on_ray_as_in_process(cluster, tmp_path):
    from starlette.testclient import TestClient

    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    from studio.videos_api import create_app
    from studio.workers_ray import RayPool
    answers = {}
    for where in ("in-process", "ray"):
        lib = Library(tmp_path / where, own=True)
        pool = RayPool("toy", workers=1) if where == "ray" else None
        try:
            with TestClient(create_app(Studio(lib, Jobs(lib, "toy", workers=pool)))) as client:
                answers[where] = api_session(client)
        finally:
            lib.close()
            if pool:
                pool.close()
    assert answers["ray"] == answers["in-process"]
    statuses = [a[3].get("status") for a in answers["ray"] if isinstance(a[3], dict)]
    assert statuses.count("completed") >= 2 and answers["ray"][-1][2] == 404   # the session did what it says


# ----------------------------------------------------------------------------- a restart while Ray jobs wait
def test_a_restarted_studio_runs_the_ray_jobs_left_queued(cluster, tmp_path):
    server = StudioServer(tmp_path / "home", args=["--ray", cluster, "--ray-workers", "1", "--backend", "toy"])
    server.start()
    try:
        def create(**body) -> str:
            r = httpx.post(f"{server.url}/v1/videos", json=dict(TINY, **body), timeout=60)
            assert r.status_code == 200, r.text
            return r.json()["id"]

        def status(vid) -> str:
            return httpx.get(f"{server.url}/v1/videos/{vid}", timeout=60).json()["status"]
        long = create(steps=200)        # still running when the studio is killed, however fast the machine
        assert wait_for(lambda: status(long) == "in_progress")
        queued = [create(seed=s) for s in (4, 5)]                  # one worker, busy: these wait
        assert [status(v) for v in queued] == ["queued", "queued"]
        server.restart()                                            # killed as a crash would; its actors go with it
        assert wait_for(lambda: all(status(v) in ("completed", "failed") for v in queued))
        assert [status(v) for v in queued] == ["completed", "completed"]
        with sqlite3.connect(f"file:{server.home / 'library.sqlite'}?mode=ro", uri=True) as c:
            states = dict(c.execute("SELECT id, state FROM jobs"))
            made = c.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
        assert states[int(long.split("_")[1])] == "interrupted" and made == 2
    finally:
        server.stop()


# ----------------------------------------------------------------------------- the page, on Ray
def test_the_page_generates_through_a_ray_worker_as_in_process(cluster, tmp_path, chromium):
    """The same browser steps as tests/test_studio_browser.py's first test, with the studio's jobs on Ray:
    progress in the job list, the result plays, the clip lands in the library (it travelled back)."""
    from tests.test_studio_browser import TIMEOUT, generate, tab, wait_video
    server = StudioServer(tmp_path / "home", args=["--ray", cluster, "--ray-workers", "1", "--backend", "toy"]).start()
    ctx = chromium.new_context(viewport={"width": 1300, "height": 1000})
    try:
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(server.url)
        generate(page, "a large blue square moving right on a black background", steps=16)
        page.locator("#jobs .cp-job[data-state=running] .cp-bar").first.wait_for(timeout=TIMEOUT)
        # a Ray worker runs on one thread: under a full suite beside other work 16 steps took over 120 s
        assert wait_video(page, "create-result", timeout=600_000).startswith(server.url)
        tab(page, "Library")
        page.locator("#lib-gallery img").first.wait_for()
        assert "blue square" in page.locator("#lib-gallery").inner_text()
        assert list((server.home / "videos").glob("*.mp4"))                  # written into the studio's own folder
    finally:
        ctx.close()
        server.stop()
