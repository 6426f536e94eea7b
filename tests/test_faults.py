"""Fault injection (issue 19): a studio server killed with SIGKILL at random points of its jobs' lives, 20 times,
restarted on the same data folder each time.

Only invariants that hold wherever a kill lands are asserted, never what a kill happened to interrupt:
- no finished video is lost: a done job keeps its videos, their files exist, are readable mp4s, and never change;
- no half-written file survives a restart: what a kill left (temp names, files of rows that never committed)
  is gone once the next studio answers;
- every job is terminal or resumed: a job running at the kill is interrupted (or cancelled, when asked) at the
  next start, a queued one stays queued and runs, and at the end every job is terminal and each resumed one done;
- nothing is attached to a job that is not done, and no id is given twice.

Twenty cold starts of `python -m studio` cost minutes (importing gradio and torch alone takes 7-25 s here), so the
studios are forked from one parent that imported them once; each child runs the studio's own entry point,
`studio.server.main` (what `python -m studio` runs), in its own process, on the fast `reference` backend.
"""
import hashlib
import json
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROUNDS = 20
ROOT = os.path.dirname(os.path.dirname(__file__))
WORK_FOLDERS = ("videos", "uploads", "exports", "previews")
ACTIVE = ("queued", "running")

# Imports what a studio imports before serving, then forks a studio per "start PORT" line (its pid is the answer)
# and SIGKILLs it on "kill" (answering once it is reaped, so its folder lock is free).
PARENT = r"""
import os, signal, sys
home, log = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(home, "tmp"), exist_ok=True)
os.environ.update(GRADIO_TEMP_DIR=os.path.join(home, "tmp"), TMPDIR=os.path.join(home, "tmp"))
import gradio, uvicorn, torch  # noqa
import engine.api, engine.backends.reference, engine.requests, studio.app, studio.server, studio.videos_api  # noqa
import gc
gc.freeze()  # the imported heap stays shared with each child (no copy-on-write when a child's gc walks it)
child = None
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "start":
        child = os.fork()
        if child == 0:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1), os.dup2(fd, 2), os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os._exit(studio.server.main(["--home", home, "--port", cmd[1], "--backend", "reference"]))
        print(child, flush=True)
    elif cmd[0] == "kill":
        os.kill(child, signal.SIGKILL)
        print(os.waitpid(child, 0)[1], flush=True)
"""


class Forked:
    """Studios on one data folder, each forked from a parent that has done the slow imports."""

    def __init__(self, home: Path):
        self.home = home
        self.log = home.parent / "studios.log"
        # one torch thread: these jobs are tiny, and on a busy machine idle worker threads only spin
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        self.parent = subprocess.Popen([sys.executable, "-c", PARENT, str(home), str(self.log)], cwd=ROOT, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.running = False

    def _ask(self, line: str) -> str:
        self.parent.stdin.write(line + "\n")
        self.parent.stdin.flush()
        answer = self.parent.stdout.readline()
        assert answer, f"the parent process died: {self.log.read_text()[-2000:] if self.log.exists() else ''}"
        return answer.strip()

    def start(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._ask(f"start {port}")
        self.running = True
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        with httpx.Client(timeout=5) as client:
            while time.time() < deadline:
                try:
                    if client.get(url + "/v1/videos").status_code == 200:
                        return url
                except httpx.HTTPError:
                    time.sleep(0.1)
        raise AssertionError(f"a studio did not answer in 180 s: {self.log.read_text()[-2000:]}")

    def kill(self):
        self._ask("kill")
        self.running = False

    def close(self):
        if self.running:
            self.kill()
        self.parent.stdin.close()
        self.parent.kill()
        self.parent.wait(30)


# ----------------------------------------------------------------------------- what the test looks at
def snapshot(home: Path, files: bool = True) -> dict:
    """The library as it stands (read-only; the studio is dead or busy): jobs, videos, files."""
    with sqlite3.connect(f"file:{home / 'library.sqlite'}?mode=ro", uri=True, timeout=30) as c:
        c.row_factory = sqlite3.Row
        jobs = {r["id"]: dict(r) for r in c.execute("SELECT id, state, step, cancel_requested FROM jobs")}
        videos = {r["id"]: dict(r) for r in c.execute("SELECT id, job_id, file, thumb FROM videos")} if files else {}
        given = dict(c.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    names = {f"{sub}/{p.name}" for sub in WORK_FOLDERS for p in (home / sub).iterdir()} if files else set()
    return {"jobs": jobs, "videos": videos, "files": names, "given": given}


def orphan_of(f: str, snap: dict) -> bool:
    """A file named after a row (videos/v<id>.mp4, exports/v<id>.gif, previews/j<id>.jpg) whose id was given out
    and whose row is gone. (Above the sequence: a whole file whose insert a kill rolled back; the next item of
    that id replaces it.)"""
    for pattern, table in ((r"videos/v(\d+)\.(?:mp4|jpg)", "videos"), (r"exports/v(\d+)\..+", "videos"),
                           (r"previews/j(\d+)\.jpg", "jobs")):
        if m := re.fullmatch(pattern, f):
            n = int(m.group(1))
            return n not in snap[table] and n <= snap["given"].get(table, 0)
    return False


def leftovers(snap: dict) -> set[str]:
    """Files no finished write would leave: temp names, and files of rows that do not exist."""
    return {f for f in snap["files"] if f.split("/", 1)[1].startswith(".") or f.endswith(".part") or orphan_of(f, snap)}


def check_finished_videos(home: Path, snap: dict, kept: dict):
    """Videos belong to done jobs only; every done job's files are whole mp4s, the same bytes as when first seen."""
    from engine.video_io import probe
    for vid, v in snap["videos"].items():
        job = snap["jobs"].get(v["job_id"])
        assert job is not None and job["state"] == "done", (vid, v, job)
    for job_id, job in snap["jobs"].items():
        if job["state"] != "done":
            continue
        files = sorted(v["file"] for v in snap["videos"].values() if v["job_id"] == job_id)
        assert files, f"done job {job_id} has no video"
        digest = {name: hashlib.sha256((home / "videos" / name).read_bytes()).hexdigest() for name in files}
        if job_id not in kept:  # first seen: a whole mp4 (later rounds: the very same bytes)
            assert all(probe(home / "videos" / name).n_frames > 0 for name in files)
        assert kept.setdefault(job_id, digest) == digest, f"job {job_id}'s videos changed"


def check_restart(before: dict, after: dict, kept: dict):
    """What the kill left is gone, nothing finished is lost, running jobs were ended, queued ones kept."""
    for f in leftovers(before):  # (a row made since may own a file of that name now)
        assert f not in after["files"] or not orphan_of(f, after), f"left over: {f}"
    for job_id, job in before["jobs"].items():
        now = after["jobs"].get(job_id)
        assert now is not None, f"job {job_id} ({job['state']}) was lost"
        if job["state"] == "running":
            want = ("cancelled",) if job["cancel_requested"] else ("interrupted",)
            assert now["state"] in want, (job_id, job, now)
        elif job["state"] != "queued":
            assert now["state"] == job["state"], (job_id, job, now)
    for job_id in kept:
        assert after["jobs"][job_id]["state"] == "done"


# ----------------------------------------------------------------------------- a round: jobs, then a kill
def submit(url: str, rng: random.Random) -> int:
    body = {"prompt": rng.choice(["a red circle moving left", "a blue square", "a green triangle"]),
            "seconds": rng.choice(["0.5", "1"]), "size": "64x64", "steps": rng.randint(2, 8), "seed": rng.randint(0, 99)}
    r = httpx.post(url + "/v1/videos", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return int(r.json()["id"].split("_")[1])


def wait_for(home: Path, until, deadline_s: float = 60):
    """Poll the library until until(snapshot) holds (or the deadline: then the kill simply lands later)."""
    deadline = time.time() + deadline_s
    while time.time() < deadline and not until(snapshot(home, files=False)):
        time.sleep(0.05)


def kill_point(home: Path, url: str, rng: random.Random, mine: list[int], kept: dict) -> str:
    """Where this round's kill lands, drawn from the seeded RNG: what it interrupts is up to the machine."""
    point, last = rng.choice(["at once", "sleep", "step", "done", "delete"]), mine[-1]
    if point == "sleep":
        time.sleep(rng.uniform(0, 1.5))
    elif point == "step":  # mid-denoising, or later if the job is quicker than the poll
        k = rng.randint(1, 8)
        wait_for(home, lambda s: s["jobs"][last]["step"] >= k or s["jobs"][last]["state"] not in ACTIVE)
    elif point == "done":  # just after a job ended: the next one may be starting
        wait_for(home, lambda s: s["jobs"][mine[0]]["state"] not in ACTIVE)
    elif point == "delete":  # a running, queued or finished job deleted just before the kill
        victim = rng.choice(mine)
        r = httpx.delete(f"{url}/v1/videos/video_{victim}", timeout=180)
        assert r.status_code == 200, r.text
        kept.pop(victim, None)
    return point


def crash_rounds(studios: Forked, home: Path, rng: random.Random, kept: dict) -> tuple[dict, list, list]:
    """ROUNDS times: start a studio, check what the last kill left, submit jobs, kill it at a random point.
    -> (the library as the last kill left it, the ids made, where each kill was aimed)."""
    ids, points, dead = [], [], None
    for _ in range(ROUNDS):
        url = studios.start()
        if dead is not None:
            check_restart(dead, snapshot(home), kept)
        mine = [submit(url, rng) for _ in range(rng.randint(1, 2))]
        ids += mine
        points.append(kill_point(home, url, rng, mine, kept))
        studios.kill()
        dead = snapshot(home)
        check_finished_videos(home, dead, kept)
    return dead, ids, points


def test_sigkill_at_random_points_loses_nothing_and_leaves_nothing(tmp_path):
    rng = random.Random(19)
    home = tmp_path / "home"
    studios, kept, t0 = Forked(home), {}, time.time()
    try:
        dead, ids, points = crash_rounds(studios, home, rng, kept)
        studios.start()  # a last start resumes what was queued and runs it to the end
        check_restart(dead, snapshot(home), kept)
        wait_for(home, lambda s: all(j["state"] not in ACTIVE for j in s["jobs"].values()), deadline_s=300)
        final = snapshot(home)
    finally:
        studios.close()
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids  # no id given twice, across 20 crashes
    assert all(j["state"] not in ACTIVE for j in final["jobs"].values()), final["jobs"]
    for job_id, job in dead["jobs"].items():
        if job["state"] == "queued":
            assert final["jobs"][job_id]["state"] == "done", (job_id, final["jobs"][job_id])
    check_finished_videos(home, final, kept)
    assert not leftovers(final), leftovers(final)
    print(f"\n{ROUNDS} kills in {time.time() - t0:.0f} s, aimed {json.dumps(points)}; "
          f"{sum(j['state'] == 'done' for j in final['jobs'].values())} of {len(final['jobs'])} jobs done")
