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
import secrets
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.params import InputError
from engine.requests import OPS

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
# The only state changes there are, each one compare-and-set in SQL (Library.transition). Only the worker ends
# a running job: a cancel of a running job sets cancel_requested and the worker ends it at its next check.
TRANSITIONS = {"queued": ("running", "cancelled", "failed"), "running": ("done", "failed", "cancelled", "interrupted")}
JOB_FIELDS = ("step", "steps", "error", "started", "finished")
INTERRUPTED = "the studio stopped while this job ran; Retry runs it again"
KINDS = tuple(OPS)   # a video is filed under the operation that made it
# AUTOINCREMENT: an id is never given twice, even after the newest row is deleted (a retried DELETE, a client
# polling an old id, or a deleted job's worker must never reach another job).
TABLES = {
    "jobs": """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, request TEXT NOT NULL, label TEXT NOT NULL,
    backend TEXT NOT NULL, state TEXT NOT NULL, step INTEGER DEFAULT 0, steps INTEGER DEFAULT 0,
    error TEXT, created REAL NOT NULL, started REAL, finished REAL, cancel_requested INTEGER NOT NULL DEFAULT 0)""",
    "videos": """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER REFERENCES jobs(id), kind TEXT NOT NULL,
    label TEXT NOT NULL, file TEXT NOT NULL, thumb TEXT, storyboard TEXT NOT NULL, settings TEXT NOT NULL,
    backend TEXT NOT NULL, seed INTEGER, lineage TEXT NOT NULL, favourite INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, duration_s REAL, width INTEGER, height INTEGER, fps REAL, deleted_at REAL)""",
}
# Columns added after a table's first release: ALTER TABLE ADD COLUMN keeps every row and id as they are.
# deleted_at: a deleted video keeps its row (prompt, settings, seed, lineage) so what was made from it still
# names it; its files are gone.
ADDED = {"videos": {"deleted_at": "REAL"}}
SCHEMA = ";\n".join(t.format(name=n) for n, t in TABLES.items()) + \
    ";\nCREATE INDEX IF NOT EXISTS videos_created ON videos(created);\n"
# Files named after row ids (their numbers count as ids once used) and what a crash can leave beside them.
NUMBERED = {"videos": ("videos", r"v(\d{1,12})\.(?:mp4|jpg)"), "exports": ("videos", r"v(\d{1,12})\..+"),
            "previews": ("jobs", r"j(\d{1,12})\.jpg")}
WORK_FOLDERS = ("videos", "uploads", "exports", "previews")
TMP_MAX_AGE_S = 3 * 3600   # Gradio keeps a copy of every upload in tmp/; by then the request that used it is over
TMP_SWEEP_EVERY_S = 600
REF = re.compile(r"^(lib):(\d{1,12})$|^(upload):([A-Za-z0-9][A-Za-z0-9._-]{0,120})$")
MEDIA_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif", ".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def worker_lost(why: str) -> str:
    """The error of a job whose worker died under it (an actor killed, a node lost)."""
    return f"the worker running this job stopped ({why[:200] or 'no reason given'}); Retry runs it again"


def safe_name(name: str) -> str:
    """A file name made of [A-Za-z0-9._-] only, no leading dot, at most 80 characters."""
    stem, dot, suffix = Path(name).name.rpartition(".")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem if dot else suffix).strip("_")[:60] or "file"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:8].lower() if dot else ""
    return f"{stem}.{suffix}" if suffix else stem


@dataclass
class Staged:
    """A finished clip's mp4 and thumbnail written into videos/ under temp names; a row makes it a library item."""
    mp4: Path
    thumb: Path
    row: dict   # the videos columns but id, job_id, file and thumb


class Library:
    """Thread-safe: one connection per call, SQLite in WAL mode does the locking.

    own=True (the studio server): this process runs the folder's jobs. It takes an OS lock on
    home/studio.lock for as long as it lives (the kernel drops it when the process dies, however
    it dies), so a second studio on the same folder is refused, and it cleans up after a studio
    that stopped: running jobs marked interrupted, half-written and orphaned files removed, tmp/
    emptied (and swept of old files while it runs). Without own, a Library only reads and adds,
    and never touches what a running studio is doing.
    """

    def __init__(self, home: str | Path, own: bool = False):
        self.home = Path(home).expanduser().resolve()
        for sub in WORK_FOLDERS:
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.db = self.home / "library.sqlite"
        self._owner = self._take_ownership() if own else None
        with self._conn() as c:
            c.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file (an old one: VACUUM below)
            c.execute("PRAGMA journal_mode=WAL")
            self._migrate(c)
            c.executescript(SCHEMA)
            if own:
                # A job that was running when the studio stopped is not re-run on its own (it may be what
                # stopped it): it is marked interrupted, for Retry (cancelled if a cancel was asked for).
                # Queued jobs stay queued and resume.
                now = time.time()
                c.execute("UPDATE jobs SET state='cancelled', finished=? WHERE state='running' AND cancel_requested=1",
                          (now,))
                c.execute("UPDATE jobs SET state='interrupted', error=?, finished=? WHERE state='running'",
                          (INTERRUPTED, now))
                if c.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # a file made before: rebuilt once
                    c.execute("VACUUM")
        self._stop = threading.Event()
        if own:
            self._clean_leftovers()
            self.sweep_tmp(0)
            threading.Thread(target=self._sweep_tmp_until_closed, name="cinepatch-sweep-tmp", daemon=True).start()

    def _migrate(self, c):
        """Tables made before ids came from AUTOINCREMENT (and cancel_requested): rebuilt in one transaction
        with every row and id kept, the id sequence set above the highest id ever used (live rows, and the
        numbers in the names of files that deleted rows left behind: previews, exports). Then the columns of
        ADDED a table lacks are added, in the same transaction."""
        c.execute("BEGIN IMMEDIATE")
        try:
            for table, create in TABLES.items():
                row = c.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
                if row is None or "AUTOINCREMENT" in row[0].upper():
                    continue
                c.execute(create.format(name=f"{table}_new"))
                new = {r[1] for r in c.execute(f"PRAGMA table_info({table}_new)")}
                cols = ", ".join(r[1] for r in c.execute(f"PRAGMA table_info({table})") if r[1] in new)
                c.execute(f"INSERT INTO {table}_new ({cols}) SELECT {cols} FROM {table}")
                c.execute(f"DROP TABLE {table}")
                c.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
                c.execute("DELETE FROM sqlite_sequence WHERE name=?", (table,))
                c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, self._highest_used(c, table)))
            for table, cols in ADDED.items():
                have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
                for col, kind in cols.items():
                    if have and col not in have:   # (no columns: a new file, made whole by SCHEMA)
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _highest_used(self, c, table: str) -> int:
        found = [c.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]]
        if table == "jobs" and c.execute("SELECT 1 FROM sqlite_master WHERE name='videos'").fetchone():
            found.append(c.execute("SELECT COALESCE(MAX(job_id), 0) FROM videos").fetchone()[0])
        for sub, (owner, pattern) in NUMBERED.items():
            if owner == table:
                found += [int(m.group(1)) for p in (self.home / sub).iterdir() if (m := re.fullmatch(pattern, p.name))]
        return max(found)

    def _clean_leftovers(self):
        """What a studio that died left: temp files of writes that never completed (dot names, `.part`), and
        files named after an id the library gave out whose row is gone (a crash between a delete's commit and
        its unlink). A file above the id sequence is left: a crash before an insert's commit rolled its id back,
        and the next item given that id replaces it (and a library.sqlite made afresh never wipes old videos)."""
        with self._conn() as c:
            # A deleted video's row stays but its files go: a crash between its delete's commit and unlink left them.
            live = {"jobs": {r[0] for r in c.execute("SELECT id FROM jobs")},
                    "videos": {r[0] for r in c.execute("SELECT id FROM videos WHERE deleted_at IS NULL")}}
            given = dict(c.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        for sub in WORK_FOLDERS:
            table, pattern = NUMBERED.get(sub, (None, None))
            for p in (self.home / sub).iterdir():
                m = re.fullmatch(pattern, p.name) if pattern else None
                orphan = m and int(m.group(1)) not in live[table] and int(m.group(1)) <= given.get(table, 0)
                if p.name.startswith(".") or p.name.endswith(".part") or orphan:
                    _remove(p)

    def sweep_tmp(self, max_age_s: float = TMP_MAX_AGE_S) -> int:
        """Remove what tmp/ has held for longer than max_age_s (0: everything) -> entries removed.

        tmp/ is Gradio's upload and cache folder (and the API's scratch space): nothing there is kept
        for long, so it is emptied when the owner starts and swept every TMP_SWEEP_EVERY_S after."""
        tmp = self.home / "tmp"
        cutoff = time.time() - max_age_s
        gone = [p for p in (tmp.iterdir() if tmp.is_dir() else ()) if max_age_s <= 0 or _newest_mtime(p) < cutoff]
        for p in gone:
            _remove(p)
        return len(gone)

    def _sweep_tmp_until_closed(self):
        while not self._stop.wait(TMP_SWEEP_EVERY_S):
            try:
                self.sweep_tmp()
            except OSError:  # a file vanishing under the sweep is not worth stopping it for
                pass

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
        self._stop.set()
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    def _conn(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        c.row_factory = sqlite3.Row
        return _Closing(c)

    @contextmanager
    def _transaction(self):
        """A connection inside BEGIN IMMEDIATE (the write lock taken at once): committed, or rolled back on error."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def _reclaim(self):
        """Give the pages of deleted rows back to the file system (auto_vacuum=INCREMENTAL)."""
        with self._conn() as c:
            c.executescript("PRAGMA incremental_vacuum;")  # run to the end (a bare execute() frees one page)

    # ------------------------------------------------------------------ jobs
    def add_job(self, op: str, request: dict, label: str, backend: str) -> int:
        with self._conn() as c:
            cur = c.execute("INSERT INTO jobs (op, request, label, backend, state, created) VALUES (?,?,?,?,?,?)",
                            (op, json.dumps(request), label[:500], backend, "queued", time.time()))
            return int(cur.lastrowid)

    def transition(self, job_id: int, src: str, dst: str, **fields) -> bool:
        """Move a job from state src to dst (and set fields) only if it is in src now -> whether it moved."""
        with self._conn() as c:
            return _cas(c, job_id, src, dst, fields)

    def request_cancel(self, job_id: int) -> bool:
        """Flag a running job for its worker to end -> False when it is not running (any more)."""
        with self._conn() as c:
            cur = c.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND state='running'", (int(job_id),))
            return cur.rowcount == 1

    def update_job(self, job_id: int, **fields):
        """Progress fields of a job. A state given here moves a queued job only (see transition)."""
        if "state" in fields:
            self.transition(job_id, "queued", fields.pop("state"), **fields)
            return
        assert not set(fields) - set(JOB_FIELDS), fields
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._conn() as c:
            c.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), int(job_id)))

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
        """A job and every video it made: the rows in one transaction, then the files. A worker still running
        it finds the row gone and attaches nothing (Jobs.cancel it first so the worker stops early)."""
        with self._transaction() as c:
            if c.execute("DELETE FROM jobs WHERE id=?", (int(job_id),)).rowcount == 0:
                return False
            gone = [self._video(r) for r in c.execute("SELECT * FROM videos WHERE job_id=?", (int(job_id),))]
            c.execute("DELETE FROM videos WHERE job_id=?", (int(job_id),))
        for v in gone:
            self._remove_files(v)
        self.preview_file(job_id).unlink(missing_ok=True)
        self._reclaim()
        return True

    def preview_file(self, job_id: int) -> Path:
        """Where a job's latest step preview is kept (it may not exist)."""
        return self.home / "previews" / f"j{int(job_id)}.jpg"

    def videos_of_job(self, job_id: int) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM videos WHERE job_id=? ORDER BY id", (int(job_id),)).fetchall()
        return [self._video(r) for r in rows]

    def finish_job(self, job_id: int, staged: list[Staged], **fields) -> bool:
        """running -> done with its staged videos attached, in one transaction. False, with nothing attached and
        the staged files removed, when the job was cancelled or deleted in the meantime."""
        return self._attach(job_id, staged, lambda c: _cas(c, job_id, "running", "done", fields)) is not None

    # ------------------------------------------------------------------ videos
    def add_video(self, job_id: int | None, kind: str, label: str, frames: np.ndarray, fps: float, sidecar: dict,
                  lineage: dict) -> int:
        """Write the mp4 and its thumbnail, then the row: a crash before the row leaves no half item."""
        return self._attach(job_id, [self.stage_video(kind, label, frames, fps, sidecar, lineage)])[0]

    def stage_video(self, kind: str, label: str, frames: np.ndarray, fps: float, sidecar: dict,
                    lineage: dict, audio=None) -> Staged:
        """Encode a clip (N, H, W, 3) (with its sound: (samples, rate), or None) and its thumbnail into videos/
        under temp names (no row yet: nobody sees them)."""
        from engine.video_io import write_video
        from PIL import Image
        n, h, w = frames.shape[:3]
        staged = self._staged(kind, label, (n, w, h), fps, sidecar, lineage)
        try:
            write_video(staged.mp4, frames, fps, overwrite=True, audio=audio)
            Image.fromarray(frames[len(frames) // 2]).save(staged.thumb, format="JPEG", quality=85)
        except BaseException:
            self.discard([staged])
            raise
        return staged

    def stage_encoded(self, kind: str, label: str, clip, fps: float, sidecar: dict, lineage: dict) -> Staged:
        """stage_video for a clip a remote worker encoded (studio.workers.Encoded: mp4 and thumbnail bytes)."""
        staged = self._staged(kind, label, (clip.frames, clip.width, clip.height), fps, sidecar, lineage)
        try:
            staged.mp4.write_bytes(clip.mp4)
            staged.thumb.write_bytes(clip.thumb)
        except BaseException:
            self.discard([staged])
            raise
        return staged

    def _staged(self, kind: str, label: str, size: tuple[int, int, int], fps: float, sidecar: dict,
                lineage: dict) -> Staged:
        """Temp names in videos/ and the row of a clip of size (frames, width, height)."""
        assert kind in KINDS, kind
        n, w, h = size
        tmp = self.home / "videos" / f".new-{secrets.token_hex(6)}"
        return Staged(tmp.with_suffix(".mp4"), tmp.with_suffix(".jpg"), {
            "kind": kind, "label": label[:500], "storyboard": json.dumps(sidecar["storyboard"]),
            "settings": json.dumps(sidecar["settings"]), "backend": sidecar["backend"], "seed": sidecar["seed"],
            "lineage": json.dumps(lineage), "created": time.time(), "duration_s": n / fps,
            "width": int(w), "height": int(h), "fps": fps})

    @staticmethod
    def discard(staged: list[Staged]):
        """Remove staged files that will not become library items."""
        for s in staged:
            s.mp4.unlink(missing_ok=True)
            s.thumb.unlink(missing_ok=True)

    def _attach(self, job_id: int | None, staged: list[Staged], claim=None) -> list[int] | None:
        """Rows for staged videos, their files renamed to v<id>.mp4/.jpg, all in one transaction that first
        runs claim(conn) (None: nothing to claim) -> the ids, or None when claim said no (files removed)."""
        moved = []
        try:
            with self._transaction() as c:
                if claim is not None and not claim(c):
                    return None
                ids = []
                for s in staged:
                    cols = {"job_id": job_id, "file": "", **s.row}
                    vid = int(c.execute(f"INSERT INTO videos ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                        tuple(cols.values())).lastrowid)
                    name, thumb = f"v{vid}.mp4", f"v{vid}.jpg"
                    for src, dst in ((s.mp4, name), (s.thumb, thumb)):
                        os.replace(src, self.home / "videos" / dst)
                        moved.append(self.home / "videos" / dst)
                    c.execute("UPDATE videos SET file=?, thumb=? WHERE id=?", (name, thumb, vid))
                    ids.append(vid)
            moved = []  # committed: the files are the items'
            return ids
        finally:
            self.discard(staged)  # renamed ones are gone from their temp names already
            for p in moved:
                p.unlink(missing_ok=True)

    def video(self, vid: int) -> dict | None:
        """A video by id, a deleted one too (its record, "deleted": True, no files) -> None when never made."""
        with self._conn() as c:
            row = c.execute("SELECT * FROM videos WHERE id=?", (int(vid),)).fetchone()
        return self._video(row) if row else None

    def videos(self, favourites: bool = False, kind: str | None = None, limit: int = 500,
               deleted: bool = False) -> list[dict]:
        """Videos newest first; deleted ones only with deleted=True (then alongside the others)."""
        q, args = "SELECT * FROM videos WHERE " + ("1=1" if deleted else "deleted_at IS NULL"), []
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
        """Remove a video's files and mark its row deleted (kept for lineage and Make again) -> False when there
        was no such video or it was deleted already."""
        item = self.video(vid)
        if item is None or item["deleted"]:
            return False
        with self._conn() as c:
            if c.execute("UPDATE videos SET deleted_at=? WHERE id=? AND deleted_at IS NULL",
                         (time.time(), int(vid))).rowcount == 0:
                return False   # a delete at the same time got there first
        self._remove_files(item)
        return True

    def _remove_files(self, item: dict):
        """A deleted item's mp4, thumbnail and the downloads made of it (exports/v<id>.*)."""
        for p in (item["path"], item["thumb_path"], *(self.home / "exports").glob(f"v{int(item['id'])}.*")):
            if p:
                Path(p).unlink(missing_ok=True)

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
        d["deleted"] = d["deleted_at"] is not None
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
        v = self.video(int(m.group(1))) if p.parent == self.home / "videos" and m else None
        if v and not v["deleted"]:
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


def _cas(c, job_id: int, src: str, dst: str, fields: dict) -> bool:
    """UPDATE ... WHERE id=? AND state=src: a job moves only from the state its writer saw (checked rowcount)."""
    assert dst in TRANSITIONS.get(src, ()), f"a job cannot go from {src} to {dst}"
    assert not set(fields) - set(JOB_FIELDS), fields
    guard = " AND cancel_requested=0" if dst == "done" else ""  # a cancel that got in first wins
    sets = ", ".join(f"{k}=?" for k in ("state", *fields))
    cur = c.execute(f"UPDATE jobs SET {sets} WHERE id=? AND state=?{guard}", (dst, *fields.values(), int(job_id), src))
    return cur.rowcount == 1


def _remove(p: Path):
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _newest_mtime(p: Path) -> float:
    """A file's mtime, or the newest of a folder's and everything in it (lstat: links are not followed)."""
    times = [p.lstat().st_mtime]
    if p.is_dir() and not p.is_symlink():
        for root, dirs, files in os.walk(p):
            times += [os.lstat(os.path.join(root, n)).st_mtime for n in dirs + files]
    return max(times)
