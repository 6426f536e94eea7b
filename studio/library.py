"""The library: every job and every video, in SQLite (WAL) plus files in the data folder.

    home/library.sqlite   jobs and videos (request, storyboard, backend, seed, settings, lineage)
    home/videos/v12.mp4   a finished video (written to a temp name, renamed when complete)
    home/videos/v12.jpg   its thumbnail
    home/uploads/…        media people brought in, under sanitised names
    home/exports/v12.gif  downloads made on demand

A reference in a request is `lib:<id>` or `upload:<name>`; both are matched by pattern
and looked up here, so no request string is ever used as a path.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from engine.params import InputError

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
INTERRUPTED = "the studio stopped while this job ran; Retry runs it again"
KINDS = ("generate", "storyboard", "remix", "blend", "loop", "extend", "recut")
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, op TEXT NOT NULL, request TEXT NOT NULL, label TEXT NOT NULL,
    backend TEXT NOT NULL, state TEXT NOT NULL, step INTEGER DEFAULT 0, steps INTEGER DEFAULT 0,
    error TEXT, created REAL NOT NULL, started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY, job_id INTEGER REFERENCES jobs(id), kind TEXT NOT NULL, label TEXT NOT NULL,
    file TEXT NOT NULL, thumb TEXT, storyboard TEXT NOT NULL, settings TEXT NOT NULL, backend TEXT NOT NULL,
    seed INTEGER, lineage TEXT NOT NULL, favourite INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    duration_s REAL, width INTEGER, height INTEGER, fps REAL);
CREATE INDEX IF NOT EXISTS videos_created ON videos(created);
"""
REF = re.compile(r"^(lib):(\d{1,12})$|^(upload):([A-Za-z0-9][A-Za-z0-9._-]{0,120})$")
MEDIA_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif", ".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def safe_name(name: str) -> str:
    """A file name made of [A-Za-z0-9._-] only, no leading dot, at most 80 characters."""
    stem, dot, suffix = Path(name).name.rpartition(".")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem if dot else suffix).strip("_")[:60] or "file"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:8].lower() if dot else ""
    return f"{stem}.{suffix}" if suffix else stem


class Library:
    """Thread-safe: one connection per call, SQLite in WAL mode does the locking.

    own=True (the studio server): this process runs the folder's jobs. It takes an OS lock on
    home/studio.lock for as long as it lives (the kernel drops it when the process dies, however
    it dies), so a second studio on the same folder is refused, and it cleans up after a studio
    that stopped: running jobs marked interrupted, half-written files removed. Without own, a
    Library only reads and adds, and never touches what a running studio is doing.
    """

    def __init__(self, home: str | Path, own: bool = False):
        self.home = Path(home).expanduser().resolve()
        for sub in ("videos", "uploads", "exports", "previews"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.db = self.home / "library.sqlite"
        self._lock = threading.Lock()
        self._owner = self._take_ownership() if own else None
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(SCHEMA)
            if own:
                # A job that was running when the studio stopped is not re-run on its own (it may be what
                # stopped it): it is marked interrupted, for Retry. Queued jobs stay queued and resume.
                c.execute("UPDATE jobs SET state='interrupted', error=?, finished=? WHERE state='running'",
                          (INTERRUPTED, time.time()))
        if own:
            for stale in (self.home / "videos").glob(".*.part*"):  # temp files of a write that never completed
                stale.unlink(missing_ok=True)

    def _take_ownership(self):
        """-> the open lock file, held exclusively; InputError naming the folder when a studio has it."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one studio per folder is then up to the person
            return None
        f = open(self.home / "studio.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise InputError(f"home: {self.home} is in use by another running studio (pid {pid}); "
                             "stop it, or start this one with another --home") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        return f

    def close(self):
        """Give up ownership (a studio stopping in-process); the lock also goes with the process."""
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    def _conn(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        c.row_factory = sqlite3.Row
        return _Closing(c)

    # ------------------------------------------------------------------ jobs
    def add_job(self, op: str, request: dict, label: str, backend: str) -> int:
        with self._conn() as c:
            cur = c.execute("INSERT INTO jobs (op, request, label, backend, state, created) VALUES (?,?,?,?,?,?)",
                            (op, json.dumps(request), label[:500], backend, "queued", time.time()))
            return int(cur.lastrowid)

    def update_job(self, job_id: int, **fields):
        bad = set(fields) - {"state", "step", "steps", "error", "started", "finished"}
        assert not bad, bad
        if "state" in fields:
            assert fields["state"] in STATES, fields["state"]
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._conn() as c:
            c.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id))

    def job(self, job_id: int) -> dict | None:
        with self._conn() as c:
            row = c.execute("SELECT * FROM jobs WHERE id=?", (int(job_id),)).fetchone()
        return _job(row) if row else None

    def jobs(self, states: tuple[str, ...] = STATES, limit: int = 50) -> list[dict]:
        q = ",".join("?" * len(states))
        with self._conn() as c:
            rows = c.execute(f"SELECT * FROM jobs WHERE state IN ({q}) ORDER BY id DESC LIMIT ?",
                             (*states, limit)).fetchall()
        return [_job(r) for r in rows]

    def job_page(self, after: int | None = None, limit: int = 20, ascending: bool = False) -> list[dict]:
        """Jobs by id, newest first (or oldest first), starting after job `after`: a cursor page."""
        op, order = (">", "ASC") if ascending else ("<", "DESC")
        where, args = (f"WHERE id {op} ?", [int(after)]) if after is not None else ("", [])
        with self._conn() as c:
            rows = c.execute(f"SELECT * FROM jobs {where} ORDER BY id {order} LIMIT ?", (*args, int(limit))).fetchall()
        return [_job(r) for r in rows]

    def delete_job(self, job_id: int) -> bool:
        """A job and every video it made (the files too)."""
        if self.job(job_id) is None:
            return False
        for v in self.videos_of_job(job_id):
            self.delete(v["id"])
        with self._conn() as c:
            c.execute("DELETE FROM jobs WHERE id=?", (int(job_id),))
        return True

    def videos_of_job(self, job_id: int) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM videos WHERE job_id=? ORDER BY id", (int(job_id),)).fetchall()
        return [self._video(r) for r in rows]

    # ------------------------------------------------------------------ videos
    def add_video(self, job_id: int | None, kind: str, label: str, frames: np.ndarray, fps: float, sidecar: dict,
                  lineage: dict) -> int:
        """Write the mp4 and its thumbnail, then the row: a crash before the row leaves no half item."""
        from engine.video_io import write_video
        from PIL import Image
        assert kind in KINDS, kind
        with self._lock:  # ids are reserved under the lock so two writers never share a file name
            with self._conn() as c:
                vid = int(c.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM videos").fetchone()[0])
            name = f"v{vid}.mp4"
            write_video(self.home / "videos" / name, frames, fps, overwrite=True)
            thumb = f"v{vid}.jpg"
            Image.fromarray(frames[len(frames) // 2]).save(self.home / "videos" / thumb, quality=85)
            with self._conn() as c:
                c.execute("INSERT INTO videos (id, job_id, kind, label, file, thumb, storyboard, settings, backend, seed,"
                          " lineage, created, duration_s, width, height, fps) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                          (vid, job_id, kind, label[:500], name, thumb, json.dumps(sidecar["storyboard"]),
                           json.dumps(sidecar["settings"]), sidecar["backend"], sidecar["seed"], json.dumps(lineage),
                           time.time(), len(frames) / fps, int(frames.shape[2]), int(frames.shape[1]), fps))
        return vid

    def video(self, vid: int) -> dict | None:
        with self._conn() as c:
            row = c.execute("SELECT * FROM videos WHERE id=?", (int(vid),)).fetchone()
        return self._video(row) if row else None

    def videos(self, favourites: bool = False, kind: str | None = None, limit: int = 500) -> list[dict]:
        q, args = "SELECT * FROM videos WHERE 1=1", []
        if favourites:
            q += " AND favourite=1"
        if kind:
            q, args = q + " AND kind=?", [kind]
        with self._conn() as c:
            rows = c.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._video(r) for r in rows]

    def set_favourite(self, vid: int, on: bool):
        with self._conn() as c:
            c.execute("UPDATE videos SET favourite=? WHERE id=?", (int(bool(on)), int(vid)))

    def delete(self, vid: int) -> bool:
        item = self.video(vid)
        if item is None:
            return False
        with self._conn() as c:
            c.execute("DELETE FROM videos WHERE id=?", (int(vid),))
        exports = self.home / "exports"
        for p in (item["path"], item["thumb_path"], exports / f"v{int(vid)}.gif", exports / f"v{int(vid)}.sprites.jpg"):
            if p:
                Path(p).unlink(missing_ok=True)
        return True

    def gif(self, vid: int) -> Path:
        """The video as a looping GIF (made once, kept in exports/)."""
        from engine.video_io import read_video, write_video
        item = self._need(vid)
        out = self.home / "exports" / f"v{int(vid)}.gif"
        if not out.exists():
            write_video(out, read_video(item["path"]), item["fps"], overwrite=True)
        return out

    def spritesheet(self, vid: int, n: int = 10, cols: int = 5) -> Path:
        """Up to n frames evenly spaced through the video, `cols` to a row, as one JPEG (made once, in exports/)."""
        from engine.video_io import read_video
        from PIL import Image
        item = self._need(vid)
        out = self.home / "exports" / f"v{int(vid)}.sprites.jpg"
        if not out.exists():
            frames = read_video(item["path"])                                        # (N, H, W, 3)
            picks = frames[np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)]
            k, (h, w) = len(picks), picks.shape[1:3]
            rows, cols = -(-k // min(cols, k)), min(cols, k)
            sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
            for i, f in enumerate(picks):
                sheet[i // cols * h:(i // cols + 1) * h, i % cols * w:(i % cols + 1) * w] = f
            tmp = out.with_name(f".{out.name}.part")
            Image.fromarray(sheet).save(tmp, format="JPEG", quality=85)
            tmp.replace(out)
        return out

    def _need(self, vid: int, field: str = "video") -> dict:
        """A library item whose file is there, or InputError naming the field."""
        item = self.video(vid)
        if item is None or not Path(item["path"]).is_file():
            raise InputError(f"{field}: library item lib:{int(vid)} does not exist (deleted?)")
        return item

    def _video(self, row) -> dict:
        d = dict(row)
        for k in ("storyboard", "settings", "lineage"):
            d[k] = json.loads(d[k])
        d["favourite"] = bool(d["favourite"])
        d["ref"] = f"lib:{d['id']}"
        d["path"] = str(self.home / "videos" / d["file"])
        d["thumb_path"] = str(self.home / "videos" / d["thumb"]) if d["thumb"] else None
        return d

    # ------------------------------------------------------------------ references
    def add_upload(self, src: str | Path, original_name: str | None = None) -> str:
        """Copy a file people brought in (already checked readable) into uploads/ -> 'upload:<name>'."""
        src = Path(src)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:10]
        name = f"{digest}_{safe_name(original_name or src.name)}"
        dst = self.home / "uploads" / name
        if not dst.exists():
            tmp = dst.with_name(f".{name}.part")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        return f"upload:{name}"

    def resolve(self, field: str, ref) -> str:
        """A media reference -> a path inside the data folder, or InputError naming the field."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            ref = f"lib:{ref}"
        m = REF.match(ref) if isinstance(ref, str) else None
        if not m:
            raise InputError(f"{field}: {str(ref)[:60]!r} is not a library item or an upload; "
                             "use 'lib:<id>' (from the library) or upload the file")
        if m.group(1):
            return self._need(int(m.group(2)), field)["path"]
        path = (self.home / "uploads" / m.group(4)).resolve()
        if path.parent != self.home / "uploads" or not path.is_file():
            raise InputError(f"{field}: upload {m.group(4)!r} is not in the library (upload it again)")
        return str(path)

    def ref_for_path(self, path: str) -> str | None:
        """The reference of a file of this library (a saved storyboard's absolute path), else None."""
        p = Path(path).resolve()
        if p.parent == self.home / "uploads" and p.is_file():
            return f"upload:{p.name}"
        m = re.fullmatch(r"v(\d{1,12})\.mp4", p.name)
        if p.parent == self.home / "videos" and m and self.video(int(m.group(1))):
            return f"lib:{int(m.group(1))}"
        return None


class _Closing:
    """sqlite3's context manager commits but never closes; this one does both."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


def _job(row) -> dict:
    d = dict(row)
    d["request"] = json.loads(d["request"])
    return d
