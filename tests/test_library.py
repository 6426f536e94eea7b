"""The studio's library (SQLite + files), its job queue and the request objects, without a browser."""
import os
import sqlite3
import threading
import time

import pytest

from engine.params import InputError
from engine.requests import build
from engine.video_io import probe, read_video
from studio.jobs import Jobs
from studio.library import Library, safe_name
from studio.workers import Slots
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
    assert lib.delete(vid) and not os.path.exists(path) and lib.video(vid)["deleted"]
    assert not lib.delete(vid) and not lib.delete(999)


def test_a_deleted_video_keeps_its_record_and_loses_its_files(tmp_path):
    """Issue 21 finding 7: a deleted parent stays a record (prompt, settings, seed, lineage, job) that its
    children's lineage still names; the lists, the references and the downloads no longer offer it."""
    lib = Library(tmp_path)
    job = lib.add_job("generate", {"prompt": "a red circle"}, "a red circle", "reference")
    parent = lib.add_video(job, "generate", "a red circle", ramp_clip(6), 12.0, sidecar(7), {})
    child = lib.add_video(None, "remix", "a blue box", ramp_clip(6), 12.0, sidecar(), {"remix_of": [f"lib:{parent}"]})
    lib.set_favourite(parent, True)
    lib.gif(parent)
    files = [lib.video(parent)["path"], lib.video(parent)["thumb_path"], str(tmp_path / "exports" / f"v{parent}.gif")]
    assert lib.delete(parent)
    v = lib.video(parent)
    assert v["deleted"] and v["deleted_at"] is not None and not lib.video(child)["deleted"]
    assert (v["label"], v["seed"], v["job_id"], v["settings"]) == ("a red circle", 7, job, {"steps": 2})
    assert not any(os.path.exists(p) for p in files)
    assert [x["id"] for x in lib.videos()] == [child] and lib.videos(favourites=True) == []
    assert [x["id"] for x in lib.videos(deleted=True)] == [child, parent]
    with pytest.raises(InputError, match=f"^video: library item lib:{parent} does not exist"):
        lib.resolve("video", f"lib:{parent}")
    with pytest.raises(InputError, match="^video: "):
        lib.gif(parent)
    assert lib.ref_for_path(files[0]) is None
    Library(tmp_path, own=True).close()                          # a restart keeps the record
    assert Library(tmp_path).video(parent)["deleted"]


def test_a_library_from_before_soft_delete_gains_deleted_at_keeping_rows_and_ids(tmp_path):
    """A library.sqlite with AUTOINCREMENT but no deleted_at (the release before): the column is added, every
    row and id kept, nothing marked deleted, and the id sequence goes on where it was."""
    lib = Library(tmp_path)
    ids = [lib.add_video(None, "generate", f"v{k}", ramp_clip(6), 12.0, sidecar(), {}) for k in range(3)]
    with sqlite3.connect(lib.db) as c:
        c.execute("DELETE FROM videos WHERE id=?", (ids[-1],))   # the newest id used once, as a hard delete left it
        c.execute("ALTER TABLE videos DROP COLUMN deleted_at")
        before = c.execute("SELECT * FROM videos ORDER BY id").fetchall()
    lib = Library(tmp_path)
    with sqlite3.connect(lib.db) as c:
        after = c.execute("SELECT * FROM videos ORDER BY id").fetchall()
    assert [r[:-1] for r in after] == before and all(r[-1] is None for r in after)
    assert [v["id"] for v in lib.videos()] == ids[1::-1] and not lib.video(ids[0])["deleted"]
    assert lib.add_video(None, "generate", "next", ramp_clip(6), 12.0, sidecar(), {}) == ids[-1] + 1
    assert lib.delete(ids[0]) and lib.video(ids[0])["deleted"]


def test_restart_keeps_videos_and_queued_jobs_and_marks_the_running_one_interrupted(tmp_path):
    lib = Library(tmp_path)
    done = lib.add_job("generate", {}, "done", "toy")
    lib.add_video(done, "generate", "done", ramp_clip(6), 12.0, sidecar(), {})
    assert lib.transition(done, "queued", "running") and lib.transition(done, "running", "done")
    running = lib.add_job("generate", {}, "running", "toy")
    assert lib.transition(running, "queued", "running")
    lib.update_job(running, step=3, steps=8)
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


def wait_until(predicate, bound_s: float = 120) -> bool:
    """Poll until predicate() holds (a bound for a stuck run, not a speed to meet)."""
    end = time.monotonic() + bound_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Scripted(Slots):
    """A pool of one worker that replays a fixed script of events at once (no model): what the studio makes
    of a worker's events, whatever their timing."""

    def __init__(self, script: list[dict]):
        super().__init__()
        self.script, self.busy = script, False

    def slots(self):
        return 0 if self.busy else 1

    def submit(self, task, events):
        self.busy = True

        def play():
            for ev in self.script:
                events(ev)
            with self._cond:
                self.busy = False
                self._cond.notify_all()
        threading.Thread(target=play, daemon=True).start()

    def cancel(self, job_id):
        pass

    def check(self):
        pass

    def close(self):
        pass


def test_progress_is_written_once_a_second_at_most_and_the_last_step_always(tmp_path, backend, monkeypatch):
    """docs/cluster.md: a write per step caps a cluster at the one SQLite writer. With the clock held still,
    200 steps cost one write when the first comes and one at the end."""
    lib = Library(tmp_path / "home", own=True)
    written, update = [], lib.update_job
    monkeypatch.setattr(lib, "update_job", lambda job, **f: (written.append(f["step"]) if "step" in f else None,
                                                             update(job, **f)))
    steps = [{"step": k} for k in range(1, 201)]
    jobs = Jobs(lib, "reference", loader=lambda: backend,
                workers=Scripted([{"state": "started"}, *steps, {"end": "cancelled", "step": 200, "asked_at": 199}]))
    monkeypatch.setattr(jobs, "clock", lambda: 1000.0)
    job = jobs.submit("generate", TINY)
    row = jobs.wait(job, 120)
    assert written == [1, 200] and row["state"] == "cancelled" and row["step"] == 200, (written, row)
    written.clear()
    monkeypatch.setattr(jobs, "clock", iter(range(0, 10_000, 2)).__next__)   # two seconds between steps
    jobs.workers.script = [*steps, {"end": "failed", "error": "it broke"}]
    row = jobs.wait(jobs.submit("generate", TINY), 120)
    assert written == list(range(1, 201)) + [200] and row["state"] == "failed" and row["step"] == 200


def test_a_running_cancel_stops_within_one_denoising_step(tmp_path, monkeypatch):
    """The worker reports how many steps were done when the cancel reached it and when the job stopped: the
    sampler checks the flag before every step, so at most the step in flight is finished after it."""
    from engine.backends.registry import load_backend
    lib = Library(tmp_path / "home", own=True)
    jobs = Jobs(lib, "standin", loader=lambda: load_backend("standin", step_s=0.1))
    ends, event = {}, jobs._event
    monkeypatch.setattr(jobs, "_event", lambda job, ev: (ends.update({job: ev}) if "end" in ev else None,
                                                          event(job, ev)))
    job = jobs.submit("generate", dict(TINY, steps=200))
    assert wait_until(lambda: lib.job(job)["step"] >= 1)
    assert jobs.cancel(job)
    row = jobs.wait(job, 120)
    end = ends[job]
    assert row["state"] == "cancelled" and end["end"] == "cancelled", (row, end)
    assert 1 <= end["asked_at"] <= end["step"] <= end["asked_at"] + 1 < 200 and row["step"] == end["step"], end


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


# ----------------------------------------------------------------------------- issue 19: ids, cancel, leftovers
class Hold:
    """A callable that, on its `at`-th call, sets `reached` and waits for `release` before calling `fn`."""

    def __init__(self, fn, at: int = 1, reached=None, release=None):
        self.fn, self.at, self.calls = fn, at, 0
        self.reached, self.release = reached or threading.Event(), release or threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            self.reached.set()
            assert self.release.wait(120), "the test never released the hold"
        return self.fn(*args, **kwargs)


class WorkerHeld:
    """A library whose first call from a job worker thread waits at a gate (every other call goes straight on)."""

    def __init__(self, lib):
        self._lib, self.reached, self.release = lib, threading.Event(), threading.Event()

    def __getattr__(self, name):
        attr = getattr(self._lib, name)
        worker = threading.current_thread().name.startswith("cinepatch-jobs")
        if not callable(attr) or not worker or self.reached.is_set():
            return attr
        return Hold(attr, reached=self.reached, release=self.release)


TINY = {"prompt": "x", "duration_s": 0.5, "resolution": 32, "steps": 2}


def test_ids_are_never_given_twice_after_deletes_and_restarts(tmp_path):
    """Issue 19 finding 3: with MAX(id)+1 the newest id came back after its row was deleted."""
    lib = Library(tmp_path)
    jobs_seen, videos_seen = [], []
    for k in range(3):
        job = lib.add_job("generate", {}, f"job {k}", "reference")
        videos_seen.append(lib.add_video(job, "generate", "x", ramp_clip(6), 12.0, sidecar(), {}))
        jobs_seen.append(job)
        assert lib.delete_job(job)
    lone = lib.add_video(None, "generate", "x", ramp_clip(6), 12.0, sidecar(), {})
    assert lib.delete(lone)
    videos_seen.append(lone)
    lib = Library(tmp_path, own=True)                               # as after a restart
    jobs_seen.append(lib.add_job("generate", {}, "after", "reference"))
    videos_seen.append(lib.add_video(None, "generate", "x", ramp_clip(6), 12.0, sidecar(), {}))
    for seen in (jobs_seen, videos_seen):
        assert seen == sorted(seen) and len(set(seen)) == len(seen), seen


OLD_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, op TEXT NOT NULL, request TEXT NOT NULL, label TEXT NOT NULL,
    backend TEXT NOT NULL, state TEXT NOT NULL, step INTEGER DEFAULT 0, steps INTEGER DEFAULT 0,
    error TEXT, created REAL NOT NULL, started REAL, finished REAL);
CREATE TABLE videos (
    id INTEGER PRIMARY KEY, job_id INTEGER REFERENCES jobs(id), kind TEXT NOT NULL, label TEXT NOT NULL,
    file TEXT NOT NULL, thumb TEXT, storyboard TEXT NOT NULL, settings TEXT NOT NULL, backend TEXT NOT NULL,
    seed INTEGER, lineage TEXT NOT NULL, favourite INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    duration_s REAL, width INTEGER, height INTEGER, fps REAL);
CREATE INDEX videos_created ON videos(created);
"""


def test_an_old_library_is_migrated_keeping_every_row_and_id(tmp_path):
    """A library.sqlite made before AUTOINCREMENT: rows and ids kept, and the next ids start above the highest
    ever used, including ids only files still name (job 9's preview, video 12's export)."""
    (tmp_path / "previews").mkdir()
    (tmp_path / "exports").mkdir()
    with sqlite3.connect(tmp_path / "library.sqlite") as c:
        c.execute("PRAGMA journal_mode=WAL")                     # as the studio left it
        c.executescript(OLD_SCHEMA)
        for k in (1, 2, 5):
            c.execute("INSERT INTO jobs (id, op, request, label, backend, state, created) VALUES (?,?,?,?,?,?,?)",
                      (k, "generate", "{}", f"job {k}", "reference", "done", 1.0))
        c.execute("INSERT INTO videos (id, job_id, kind, label, file, thumb, storyboard, settings, backend, seed, "
                  "lineage, created) VALUES (3, 5, 'generate', 'v', 'v3.mp4', 'v3.jpg', '{}', '{}', 'reference', 1, "
                  "'{}', 1.0)")
        before = {t: c.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("jobs", "videos")}
    (tmp_path / "previews" / "j9.jpg").write_bytes(b"jpg")       # job 9 existed once (and was deleted)
    (tmp_path / "exports" / "v12.gif").write_bytes(b"gif")       # so did video 12
    lib = Library(tmp_path)
    with sqlite3.connect(tmp_path / "library.sqlite") as c:
        after = {t: [r[:len(before[t][0])] for r in c.execute(f"SELECT * FROM {t} ORDER BY id")] for t in before}
        schema = " ".join(r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE type='table'"))
    assert after == before and schema.count("AUTOINCREMENT") == 2
    assert lib.job(5)["cancel_requested"] == 0 and lib.video(3)["deleted"] is False
    assert lib.add_job("generate", {}, "next", "reference") == 10
    assert lib.add_video(None, "generate", "x", ramp_clip(6), 12.0, sidecar(), {}) == 13
    Library(tmp_path, own=True).close()                           # the owner also turns on incremental vacuum
    with sqlite3.connect(tmp_path / "library.sqlite") as c:
        assert c.execute("PRAGMA auto_vacuum").fetchone()[0] == 2 and c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 4


def test_job_states_move_only_by_compare_and_set(tmp_path):
    lib = Library(tmp_path)
    job = lib.add_job("generate", {}, "x", "reference")
    assert not lib.transition(job, "running", "done")              # it is queued, not running: nothing moves
    assert lib.transition(job, "queued", "running") and not lib.transition(job, "queued", "running")
    assert lib.request_cancel(job) and lib.job(job)["state"] == "running"   # only the worker ends a running job
    staged = [lib.stage_video("generate", "x", ramp_clip(6), 12.0, sidecar(), {})]
    assert not lib.finish_job(job, staged)                         # a cancel that got in first wins
    assert lib.videos_of_job(job) == [] and list((lib.home / "videos").iterdir()) == []
    assert lib.transition(job, "running", "cancelled") and lib.job(job)["state"] == "cancelled"
    for dst in ("running", "done", "queued"):                      # terminal states are final
        with pytest.raises(AssertionError, match="cannot go from cancelled"):
            lib.transition(job, "cancelled", dst)


def test_a_cancel_between_dequeue_and_start_is_final(tmp_path, backend):
    """Issue 19 finding 5a: the worker wrote "running" over a cancel that landed after it took the job."""
    lib = Library(tmp_path / "home")
    held = WorkerHeld(lib)
    jobs = Jobs(held, "reference", loader=lambda: backend)
    job = jobs.submit("generate", TINY)
    assert held.reached.wait(120)                                 # the worker has the job and is about to start it
    assert jobs.cancel(job) and jobs.wait(job, 120)["state"] == "cancelled"
    held.release.set()
    after = jobs.submit("generate", TINY)
    assert jobs.wait(after, 120)["state"] == "done"                # the worker is past the cancelled job
    row = lib.job(job)
    assert row["state"] == "cancelled" and row["started"] is None and lib.videos_of_job(job) == []


def _hold_phase(phase, lib, backend, monkeypatch) -> tuple[Hold, object]:
    """-> (the hold, the Jobs loader) for a job held at `phase`."""
    import engine.api
    where = {"encode": (backend, "encode_text"), "step": (backend, "denoise"), "decode": (engine.api, "decode_frames"),
             "recut": (engine.api, "assemble"), "write": (lib, "stage_video"), "attach": (lib, "finish_job")}
    if phase == "load":
        hold = Hold(lambda: backend)
        return hold, hold
    obj, name = where[phase]
    hold = Hold(getattr(obj, name))
    monkeypatch.setattr(obj, name, hold)
    return hold, lambda: backend


@pytest.mark.parametrize("phase", ["load", "encode", "step", "decode", "recut", "write", "attach"])
def test_cancel_is_honoured_at_every_phase_and_returns_at_once(phase, tmp_path, backend, monkeypatch, make_video):
    """Issue 19 finding 5b/5c: a re-cut, a decode and a library write ignored cancel, and cancel was only seen
    between steps. The worker is held inside the phase while cancel is called: cancel must answer without waiting
    for it, and once released the job ends cancelled with no video and no file left."""
    lib = Library(tmp_path / "home")
    hold, loader = _hold_phase(phase, lib, backend, monkeypatch)
    jobs = Jobs(lib, "reference", loader=loader)
    if phase == "recut":
        job = jobs.submit("recut", {"video": lib.add_upload(make_video(), "clip.mp4"), "trim": [0.0, 1.0]})
    else:
        job = jobs.submit("generate", TINY)
    assert hold.reached.wait(120)
    answered = threading.Event()
    threading.Thread(target=lambda: jobs.cancel(job) and answered.set(), daemon=True).start()
    assert answered.wait(60), "cancel waited for the worker"
    assert lib.job(job)["state"] == "running" and lib.job(job)["cancel_requested"] == 1
    hold.release.set()
    assert jobs.wait(job, 120)["state"] == "cancelled"
    assert lib.videos_of_job(job) == [] and lib.videos() == [] and list((lib.home / "videos").iterdir()) == []


def test_a_deleted_running_job_attaches_nothing_to_a_later_job(tmp_path, backend, monkeypatch):
    """Issue 19 finding 3: a job deleted while it ran (no cancel) went on, and its clip was attached to the next
    job, which had been given the same id."""
    import engine.api
    lib = Library(tmp_path / "home")
    hold = Hold(engine.api.decode_frames)
    monkeypatch.setattr(engine.api, "decode_frames", hold)
    jobs = Jobs(lib, "reference", loader=lambda: backend)
    gone = jobs.submit("generate", dict(TINY, duration_s=1.0))
    assert hold.reached.wait(120)
    assert lib.delete_job(gone)
    later = lib.add_job("generate", TINY, "later", "reference")    # made while the deleted one still runs
    hold.release.set()
    assert jobs.wait(gone, 120) is None and later != gone
    assert lib.videos() == [] and lib.videos_of_job(later) == [] and list((lib.home / "videos").iterdir()) == []
    assert jobs.preview_path(gone) is None


def test_the_owner_removes_leftovers_of_a_crash(tmp_path):
    """Issue 19 finding 7: temp files in exports/ and uploads/, files of deleted rows, Gradio's tmp/. A file whose
    number the library never gave out stays (the next item of that id replaces it; old videos beside a new
    library.sqlite are not wiped)."""
    lib = Library(tmp_path)
    vid = lib.add_video(None, "generate", "kept", ramp_clip(6), 12.0, sidecar(), {})
    gone = lib.add_video(None, "generate", "deleted", ramp_clip(6), 12.0, sidecar(), {})
    job = lib.add_job("generate", {}, "deleted", "reference")
    marked = lib.add_video(None, "generate", "soft-deleted", ramp_clip(6), 12.0, sidecar(), {})
    with sqlite3.connect(lib.db) as c:                             # as a crash between a delete's commit and unlink
        c.execute("DELETE FROM videos WHERE id=?", (gone,))
        c.execute("DELETE FROM jobs WHERE id=?", (job,))
        c.execute("UPDATE videos SET deleted_at=1.0 WHERE id=?", (marked,))
    home = lib.home
    keep = [home / "videos" / f"v{vid}.mp4", home / "videos" / f"v{vid}.jpg", home / "exports" / f"v{vid}.gif",
            home / "uploads" / "abc_clip.mp4", home / "exports" / "storyboard.json", home / "videos" / "v999.mp4"]
    junk = [home / "exports" / f".v{vid}.sprites.jpg.part", home / "exports" / f".v{vid}.1234-0badcafe.part.gif",
            home / "uploads" / ".abc_clip.mp4.part", home / "previews" / "j3.jpg.part",
            home / "videos" / ".new-0123456789ab.mp4", home / "videos" / f"v{gone}.mp4", home / "videos" / f"v{gone}.jpg",
            home / "exports" / f"v{gone}.gif", home / "previews" / f"j{job}.jpg", home / "videos" / f"v{marked}.mp4",
            home / "videos" / f"v{marked}.jpg",
            home / "tmp" / "0f3a" / "upload.bin", home / "tmp" / "api-x" / "clip.mp4"]
    for p in keep[2:] + junk:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    Library(tmp_path, own=True).close()
    assert all(p.exists() for p in keep) and not any(p.exists() for p in junk)
    assert Library(tmp_path).video(marked)["deleted"]                # its record stays
    assert list((home / "tmp").iterdir()) == []


def test_tmp_keeps_only_what_is_recent(tmp_path):
    """Gradio copies every upload into tmp/ and never removes it: the owner sweeps what is older than a bound."""
    from studio.library import TMP_MAX_AGE_S
    lib = Library(tmp_path)
    old, new, nested = tmp_path / "tmp" / "old", tmp_path / "tmp" / "new", tmp_path / "tmp" / "busy"
    for folder in (old, new, nested):
        folder.mkdir(parents=True)
        (folder / "upload.mp4").write_bytes(b"x" * 1000)
    long_ago = time.time() - TMP_MAX_AGE_S - 60
    for p in (old, old / "upload.mp4", nested):                    # busy/ is old but holds a recent file
        os.utime(p, (long_ago, long_ago))
    assert lib.sweep_tmp() == 1
    assert not old.exists() and (new / "upload.mp4").exists() and (nested / "upload.mp4").exists()


def test_deleted_jobs_give_their_space_back(tmp_path):
    """Issue 19 finding 7: the file kept the pages of deleted jobs (now auto_vacuum=INCREMENTAL)."""
    lib = Library(tmp_path, own=True)
    ids = [lib.add_job("generate", {"prompt": "x" * 100_000}, "big", "reference") for _ in range(20)]
    full = os.path.getsize(lib.db)
    for job in ids:
        lib.delete_job(job)
    assert full > 2_000_000 and os.path.getsize(lib.db) < full / 10, (full, os.path.getsize(lib.db))


# ----------------------------------------------------------------------------- temp files of killed writers
def killed_writer(code: str, out) -> str:
    """Run `code` (which opens a temp file for `out`, prints its path, then sleeps) in a process, SIGKILL it once
    it has printed, and return the temp file it left."""
    import signal
    import subprocess
    import sys
    writer = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    part = writer.stdout.readline().strip()
    writer.send_signal(signal.SIGKILL)
    writer.wait(60)
    assert part and os.path.exists(part), part
    return part


def test_a_later_write_removes_the_part_file_of_a_killed_writer(tmp_path):
    """Issue 19 finding 7: a writer killed with SIGKILL leaves `.NAME.<pid>-<hex>.part.SUFFIX`; the next write
    to the same output removes it (its pid is dead), and keeps a live writer's part."""
    from engine.files import atomic_write_text, part_path
    out = tmp_path / "out.json"
    dead_part = killed_writer("import sys, time\nfrom engine.files import atomic_path\n"
                              "with atomic_path(sys.argv[1]) as tmp:\n"
                              "    tmp.write_text('half')\n    print(tmp, flush=True)\n    time.sleep(600)\n", out)
    live_part = part_path(out)                                     # this process is alive: its part stays
    live_part.write_text("mine")
    other = tmp_path / ".out.v2.123-0badcafe.part.json"            # not a part of out.json
    other.write_text("x")
    assert os.path.basename(dead_part).startswith(".out.")
    atomic_write_text(out, "{}")
    assert out.read_text() == "{}" and not os.path.exists(dead_part) and live_part.exists() and other.exists()


def test_a_later_video_write_removes_the_part_file_of_a_killed_writer(tmp_path):
    """Issue 19 finding 7: `cinepatch` killed with SIGKILL while writing out.mp4 left `.out.*.part.mp4` for good."""
    from engine.video_io import write_video
    out = tmp_path / "out.mp4"
    dead_part = killed_writer("import sys, time\nfrom pathlib import Path\nfrom engine.video_io import _staging\n"
                              "with _staging(Path(sys.argv[1]), 'out') as tmp:\n"
                              "    tmp.write_bytes(b'half')\n    print(tmp, flush=True)\n    time.sleep(600)\n", out)
    write_video(out, ramp_clip(6), 12.0)
    assert not os.path.exists(dead_part)


@pytest.mark.parametrize("op, req, want", [("extend", {"prompt": "a large red circle"}, "extend: a large red circle"),
                                           ("recut", {"prompt": "a box"}, "re-cut: a box"),
                                           ("loop", {}, "loop"), ("blend", {}, "blend"), ("generate", {}, "untitled")])
def test_job_labels_say_the_kind_once_and_apart_from_the_prompt(op, req, want):
    """Issue 21 finding 8: labels read "extenda large…", "re-cuta large…" and an empty "blend:"."""
    from studio.jobs import _label
    assert _label(op, req, None) == want
