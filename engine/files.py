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
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{field}: {str(path)!r} exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{field}: folder {str(path.parent)!r} does not exist")
    return path


@contextmanager
def atomic_path(path: Path, overwrite: bool = False, field: str = "out"):
    """Yield a temp path beside `path` (same suffix); rename it over `path` only on success."""
    path = check_writable(Path(path), overwrite, field)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str, overwrite: bool = False, field: str = "out") -> Path:
    with atomic_path(path, overwrite, field) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
