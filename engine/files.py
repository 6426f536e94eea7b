"""Atomic file writes: a temp name in the same folder, renamed when complete.

A crash or a bad input never leaves a partial output, and an existing file is only
replaced when the caller says so.
"""
from __future__ import annotations

import os
import tempfile
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


@contextmanager
def atomic_path(path: Path, overwrite: bool = False, field: str = "out"):
    """Yield a temp path beside `path` (same suffix); rename it over `path` only on success."""
    path = check_writable(Path(path), overwrite, field)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, overwrite: bool = False, field: str = "out") -> Path:
    with atomic_path(path, overwrite, field) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
