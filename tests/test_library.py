"""The studio's library (SQLite + files), its job queue and the request objects, without a browser."""
import os
import sqlite3

import pytest

from engine.params import InputError
from engine.requests import build
from engine.video_io import probe, read_video
from studio.jobs import Jobs
from studio.library import Library, safe_name
from tests.conftest import ramp_clip


def sidecar(seed=3):
    return {"storyboard": {"cards": [], "duration_s": 1.0}, "settings": {"steps": 2}, "backend": "reference",
            "seed": seed}


def test_video_round_trip_favourite_filter_delete(tmp_path):
    lib = Library(tmp_path)
    job = lib.add_job("generate", {"prompt": "x"}, "a red circle", "reference")
    clip = ramp_clip(12, 48, 32)
    vid = lib.add_video(job, "generate", "a red circle", clip, 12.0, sidecar(), {})
    v = lib.video(vid)
    assert v["ref"] == f"lib:{vid}" and v["seed"] == 3 and v["width"] == 48 and v["height"] == 32
    assert read_video(v["path"]).shape == clip.shape          # a real, readable mp4
    assert os.path.exists(v["thumb_path"])
    other = lib.add_video(job, "remix", "remixed", clip, 12.0, sidecar(4), {"remix_of": [f"lib:{vid}"]})
    assert lib.video(other)["lineage"] == {"remix_of": [f"lib:{vid}"]}
    assert [x["id"] for x in lib.videos(kind="remix")] == [other]
    lib.set_favourite(vid, True)
    assert [x["id"] for x in lib.videos(favourites=True)] == [vid]
    path = v["path"]
    assert lib.delete(vid) and not os.path.exists(path) and lib.video(vid) is None
    assert not lib.delete(vid)


def test_restart_keeps_videos_and_queued_jobs_and_marks_the_running_one_interrupted(tmp_path):
    lib = Library(tmp_path)
    done = lib.add_job("generate", {}, "done", "toy")
    lib.add_video(done, "generate", "done", ramp_clip(6), 12.0, sidecar(), {})
    lib.update_job(done, state="done")
    running = lib.add_job("generate", {}, "running", "toy")
    lib.update_job(running, state="running", step=3, steps=8)
    queued = lib.add_job("generate", {}, "queued", "toy")
    (tmp_path / "videos" / ".v9.part.mp4").write_bytes(b"half a file")
    assert Library(tmp_path).job(running)["state"] == "running"   # only the studio that owns the folder cleans up
    assert (tmp_path / "videos" / ".v9.part.mp4").exists()
    lib2 = Library(tmp_path, own=True)  # as after a kill and a new start
    assert lib2.job(done)["state"] == "done"
    assert lib2.job(running)["state"] == "interrupted" and "Retry" in lib2.job(running)["error"]
    assert lib2.job(queued)["state"] == "queued"          # its backend's queue picks it up again (below)
    assert len(lib2.videos()) == 1 and not (tmp_path / "videos" / ".v9.part.mp4").exists()
    with sqlite3.connect(tmp_path / "library.sqlite") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_studio_per_data_folder(tmp_path):
    """The folder's owner holds an OS lock: a second owner is refused with a one-line error, in this
    process and from a second `python -m studio` (exit 2, before it loads anything), and the lock
    is free again once the owner closes."""
    import subprocess
    import sys
    owner = Library(tmp_path, own=True)
    with pytest.raises(InputError, match=rf"^home: .* is in use by another running studio \(pid {os.getpid()}\)"):
        Library(tmp_path, own=True)
    second = subprocess.run([sys.executable, "-m", "studio", "--home", str(tmp_path), "--port", "1"],
                            capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines() == [f"cinepatch: error: home: {tmp_path.resolve()} is in use by "
                                                  f"another running studio (pid {os.getpid()}); stop it, or start "
                                                  "this one with another --home"]
    owner.close()
    Library(tmp_path, own=True).close()


def test_references_resolve_only_inside_the_data_folder(tmp_path, make_video):
    lib = Library(tmp_path / "home")
    vid = lib.add_video(None, "generate", "x", ramp_clip(6), 12.0, sidecar(), {})
    assert lib.resolve("video", f"lib:{vid}") == lib.video(vid)["path"]
    assert lib.resolve("video", vid) == lib.video(vid)["path"]
    up = lib.add_upload(make_video(), "../../my clip (1).mp4")
    assert up.startswith("upload:") and "/" not in up and ".." not in up
    assert lib.resolve("video", up).startswith(str(lib.home / "uploads"))
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"x")
    os.symlink(secret, lib.home / "uploads" / "link.mp4")
    for bad in ["/etc/passwd", str(secret), "../secret.mp4", "lib:999", "lib:1/../../x", "upload:../secret.mp4",
                "upload:link.mp4", "upload:%2e%2e%2fsecret.mp4", "file:///etc/passwd", "", None, 3.5]:
        with pytest.raises(InputError, match="video"):
            lib.resolve("video", bad)


def test_safe_name():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("my clip (1).MP4") == "my_clip_1.mp4"
    assert safe_name(".hidden") == "file.hidden"
    assert "/" not in safe_name("a/b\\c.mp4") and not safe_name("..").startswith(".")


# ----------------------------------------------------------------------------- requests
def test_requests_name_fields_and_lineage(make_video, make_image):
    v = make_video()
    tl, settings, lineage = build("remix", {"video": v, "prompt": "a blue square", "amount": 0.3, "steps": 4})
    assert settings == {"steps": 4} and lineage == {"remix_of": [v]}
    assert [c.kind for c in tl.cards] == ["video", "text"] and tl.cards[0].strength == pytest.approx(0.7)
    tl, _, lineage = build("generate", {"image": make_image(), "prompt": "p", "duration_s": 1.0})
    assert tl.cards[0].kind == "image" and "made_from" in lineage
    tl, _, _ = build("blend", {"a": v, "b": v, "curve": [[0, 0], [1, 1]]})
    assert tl.noise is not None and len([c for c in tl.cards if c.kind == "video"]) == 2
    with pytest.raises(InputError, match="request: unknown field 'colour'"):
        build("generate", {"prompt": "x", "colour": 1})
    with pytest.raises(InputError, match="op:"):
        build("explode", {})
    with pytest.raises(InputError, match="video: missing"):
        build("loop", {})
    with pytest.raises(InputError, match="curve: missing"):
        build("blend", {"a": v, "b": v})
    with pytest.raises(InputError, match="amount"):
        build("remix", {"video": v, "amount": 2})


def test_a_resolver_sees_every_media_reference(make_video):
    seen = []
    v = make_video()

    def resolve(field, ref):
        seen.append((field, ref))
        return v
    story = {"duration_s": 2.0, "cards": [{"kind": "video", "start_s": 0, "end_s": 1, "path": "lib:7"},
                                          {"kind": "text", "start_s": 0, "end_s": 2, "text": "x"}]}
    _, _, lineage = build("storyboard", {"storyboard": story}, resolve)
    assert seen == [("cards[0].path", "lib:7")] and lineage == {"made_from": ["lib:7"]}


# ----------------------------------------------------------------------------- jobs
@pytest.fixture
def jobs(tmp_path, backend):
    lib = Library(tmp_path / "home")
    return Jobs(lib, "reference", loader=lambda: backend)


def test_job_runs_to_a_library_video_with_progress(jobs):
    job = jobs.submit("generate", {"prompt": "a red circle", "duration_s": 1.0, "resolution": 32, "steps": 4,
                                   "variations": 2, "seed": 5})
    row = jobs.wait(job, timeout=120)
    assert row["state"] == "done" and row["step"] == 4 and row["steps"] == 4
    vids = jobs.library.videos_of_job(job)
    assert [v["seed"] for v in vids] == [5, 6]                  # variations: one batch, seeds in order
    assert probe(vids[0]["path"]).n_frames == 12                  # 1 s at the default 12 fps
    assert vids[0]["storyboard"]["cards"][0]["text"] == "a red circle"
    assert jobs.preview_path(job) is not None


def test_bad_requests_are_refused_before_queueing_and_failures_do_not_stop_the_queue(jobs, make_video):
    with pytest.raises(InputError, match="video"):
        jobs.submit("remix", {"video": "/etc/passwd"})
    assert jobs.library.jobs() == []
    v = jobs.library.add_upload(make_video(), "clip.mp4")
    bad = jobs.submit("remix", {"video": v, "steps": 2})
    (jobs.library.home / "uploads" / v.split(":", 1)[1]).unlink()   # gone before it runs
    good = jobs.submit("recut", {"video": jobs.library.add_upload(make_video("b.mp4", seed=1), "b.mp4"),
                                 "trim": [0.0, 1.0]})
    assert jobs.wait(bad, 120)["state"] == "failed" and "video" in jobs.library.job(bad)["error"]
    assert jobs.wait(good, 120)["state"] == "done"
    retried = jobs.retry(good)
    assert jobs.wait(retried, 120)["state"] == "done" and retried != good


def test_jobs_left_queued_by_a_restart_resume_in_order(tmp_path, backend):
    lib = Library(tmp_path / "home")
    req = {"prompt": "a red circle", "duration_s": 0.5, "resolution": 32, "steps": 1}
    queued = [lib.add_job("generate", req, f"job {k}", "reference") for k in range(3)]
    other = lib.add_job("generate", req, "another backend's", "toy")
    jobs = Jobs(Library(tmp_path / "home", own=True), "reference", loader=lambda: backend)   # as after a restart
    rows = [jobs.wait(j, timeout=120) for j in queued]
    assert [r["state"] for r in rows] == ["done"] * 3
    assert [r["started"] for r in rows] == sorted(r["started"] for r in rows)
    assert lib.job(other)["state"] == "queued" and len(lib.videos_of_job(queued[0])) == 1


def test_cancel(jobs):
    slow = jobs.submit("generate", {"prompt": "x", "duration_s": 1.0, "resolution": 32, "steps": 50})
    queued = jobs.submit("generate", {"prompt": "y", "duration_s": 1.0, "resolution": 32, "steps": 2})
    assert jobs.cancel(queued)
    assert jobs.cancel(slow)
    assert jobs.wait(slow, 120)["state"] == "cancelled"
    assert jobs.wait(queued, 120)["state"] == "cancelled"
    assert jobs.library.videos_of_job(queued) == [] and jobs.library.videos_of_job(slow) == []


def test_paths_of_library_files_map_back_to_references(tmp_path, make_video):
    lib = Library(tmp_path / "home")
    vid = lib.add_video(None, "generate", "x", ramp_clip(6), 12.0, sidecar(), {})
    up = lib.add_upload(make_video(), "clip.mp4")
    assert lib.ref_for_path(lib.video(vid)["path"]) == f"lib:{vid}"
    assert lib.ref_for_path(lib.resolve("video", up)) == up
    assert lib.ref_for_path(make_video("elsewhere.mp4")) is None
    assert lib.ref_for_path(str(lib.home / "videos" / "v999.mp4")) is None
    assert lib.ref_for_path(str(lib.home / "library.sqlite")) is None


def test_two_first_requests_for_one_backend_share_one_queue(tmp_path, jobs, monkeypatch):
    import threading
    import time

    from studio.app import Studio
    monkeypatch.setattr("engine.backends.registry.configured", lambda: [jobs.backend_name, "ltx"])
    made = []

    def make(name):                 # slow enough that both threads are inside queue() at once
        time.sleep(0.2)
        made.append(name)
        return object()
    studio = Studio(jobs.library, jobs, make_jobs=make)
    got = []
    threads = [threading.Thread(target=lambda: got.append(studio.queue("ltx"))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert made == ["ltx"] and len({id(q) for q in got}) == 1
