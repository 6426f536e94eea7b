"""Issue 19 findings 3 and 7 over HTTP, against a real studio (`python -m studio --backend reference`):
ids are never given twice, a deleted job never reaches another, and a restart leaves nothing behind."""
import os
import sqlite3
import time

import httpx
import pytest

from tests.conftest import StudioServer

TINY = {"seconds": "0.5", "size": "64x64", "steps": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = StudioServer(tmp_path_factory.mktemp("lifecycle") / "home", args=["--backend", "reference"]).start()
    yield server
    server.stop()


def create(server, prompt="a red circle", **body) -> int:
    r = httpx.post(f"{server.url}/v1/videos", json={"prompt": prompt, **TINY, **body}, timeout=60)
    assert r.status_code == 200, r.text
    return int(r.json()["id"].split("_")[1])


def status(server, job: int) -> str:
    return httpx.get(f"{server.url}/v1/videos/video_{job}", timeout=60).json()["status"]


def poll(server, job: int, until=("completed", "failed"), timeout_s: float = 300) -> str:
    deadline = time.time() + timeout_s
    while (s := status(server, job)) not in until and time.time() < deadline:
        time.sleep(0.05)
    return s


def delete(server, job: int):
    r = httpx.delete(f"{server.url}/v1/videos/video_{job}", timeout=300)
    assert r.status_code == 200 and r.json()["deleted"], r.text


def video_rows(server, job: int) -> int:
    with sqlite3.connect(f"file:{server.home / 'library.sqlite'}?mode=ro", uri=True) as c:
        return c.execute("SELECT COUNT(*) FROM videos WHERE job_id=?", (job,)).fetchone()[0]


def test_ids_are_never_given_twice_after_delete_or_restart(server):
    """Finding 3: twenty create-then-delete cycles all got video_107 (MAX(id)+1 after the newest was deleted)."""
    ids = []
    for k in range(5):
        ids.append(create(server, f"clip {k}"))
        delete(server, ids[-1])
    server.restart()
    ids.append(create(server, "after a restart"))
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    r = httpx.get(f"{server.url}/v1/videos/video_{ids[0]}", timeout=60)
    assert r.status_code == 404                                   # a deleted id stays deleted
    poll(server, ids[-1])


def test_a_deleted_running_job_never_becomes_another_jobs_video(server):
    """Finding 3: a deleted long job kept running, and its video was attached to the next job, given the same id."""
    long = create(server, "a long one", seconds="2", steps=40)
    assert poll(server, long, until=("in_progress", "completed", "failed")) in ("in_progress", "completed")
    delete(server, long)
    short = create(server, "a short one")
    assert short != long and poll(server, short) == "completed"
    seconds = httpx.get(f"{server.url}/v1/videos/video_{short}", timeout=60).json()["seconds"]
    assert seconds == "0.5" and video_rows(server, short) == 1 and video_rows(server, long) == 0


def test_a_restart_removes_temp_files_and_what_gradio_kept(server):
    """Finding 7: `.part` files in exports/ and uploads/ stayed after a crash, and Gradio's raw /upload kept every
    file in tmp/ forever (and served it)."""
    home = server.home
    junk = [home / "exports" / ".v1.sprites.jpg.part", home / "exports" / ".v1.123-0badcafe.part.gif",
            home / "uploads" / ".abc_clip.mp4.part", home / "videos" / ".v7.0badcafe.part.mp4"]
    for p in junk:
        p.write_bytes(b"half a file")
    kept = home / "uploads" / "abc_clip.mp4"
    kept.write_bytes(b"an upload")
    r = httpx.post(f"{server.url}/gradio_api/upload", files=[("files", ("big.bin", os.urandom(300_000)))], timeout=60)
    assert r.status_code == 200, r.text
    (copy,) = r.json()
    assert os.path.realpath(copy).startswith(str(home / "tmp")) and os.path.exists(copy)
    server.restart()                                               # killed, as a crash would, then started again
    assert not any(p.exists() for p in junk) and kept.exists()
    assert not os.path.exists(copy)
    assert httpx.get(f"{server.url}/gradio_api/file={copy}", timeout=60).status_code >= 400


def db_size(server) -> int:
    """The library file's size once its write-ahead log is folded in."""
    with sqlite3.connect(server.home / "library.sqlite") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(server.home / "library.sqlite")


def test_deleted_jobs_give_their_space_back(server):
    """Finding 7: the library file kept the pages of deleted jobs."""
    before = db_size(server)
    words = "a red circle moving left " * 76                       # 1,900 characters
    jobs = [create(server, f"{k} {words}", negative_prompt=words) for k in range(60)]
    full = db_size(server)
    for job in jobs:
        delete(server, job)
    after = db_size(server)
    assert full - before > 200_000 and after < before + (full - before) / 4, (before, full, after)
