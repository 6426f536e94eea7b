"""Atomic file writes: a temp name in the same folder, renamed when complete.

A crash or a bad input never leaves a partial output, and an existing file is only
replaced when the caller says so. A temp name carries its writer's pid
(`.NAME.<pid>-<random>.part.SUFFIX`), so a writer that was killed (SIGKILL, power loss)
leaves a file that the next write to the same output recognises as dead and removes.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from engine.params import InputError


def check_writable(path: Path, overwrite: bool, field: str = "out") -> Path:
    """Refuse before any work: an existing file (without overwrite), a folder that is missing or not writable."""
    path = Path(path)
    if path.is_dir() and path.suffix:
        raise InputError(f"{field}: {str(path)!r} is a folder, not a file")
    if path.exists() and not overwrite:
        raise InputError(f"{field}: {str(path)!r} exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise InputError(f"{field}: folder {str(path.parent)!r} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"{field}: no permission to write in {str(path.parent)!r}")
    return path


def part_path(dest: Path, is_dir: bool = False) -> Path:
    """A temp name beside `dest` that names this process: .NAME.<pid>-<8 hex>.part<suffix> (no suffix for a folder;
    the real suffix stays last because ffmpeg and PIL pick the format from it)."""
    dest = Path(dest)
    return dest.parent / f".{dest.stem}.{os.getpid()}-{secrets.token_hex(4)}.part{'' if is_dir else dest.suffix}"


def remove_stale_parts(dest: Path) -> list[Path]:
    """Remove the temp files (or folders) beside `dest` whose writer process is gone -> what was removed.

    A live writer's part is kept, whoever it is. A pid is only meaningful on this machine: a folder
    shared with another machine may see a live writer there as dead (its rename then fails, nothing is lost)."""
    dest = Path(dest)
    name = re.compile(rf"\.{re.escape(dest.stem)}\.(\d+)-[0-9a-f]{{8}}\.part(?:{re.escape(dest.suffix)})?")
    gone = []
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return gone
    for p in entries:
        m = name.fullmatch(p.name)
        if m and not _alive(int(m.group(1))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process there: keep every part
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextmanager
def atomic_path(path: Path, overwrite: bool = False, field: str = "out"):
    """Yield a temp path beside `path` (same suffix); rename it over `path` only on success."""
    path = check_writable(Path(path), overwrite, field)
    remove_stale_parts(path)
    tmp = part_path(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the usual mode, umask applied
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str, overwrite: bool = False, field: str = "out") -> Path:
    with atomic_path(path, overwrite, field) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
