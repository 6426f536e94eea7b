"""Start the studio: `cinepatch studio` (or `python -m studio`).

Safe by default for a local server (../shared/SECURITY.md): 127.0.0.1 only, no share
link, files served only from the data folder's videos/ and exports/, uploads capped, analytics off, Gradio's
temp folder inside the data folder (set before gradio is imported: later has no effect).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_HOME = "~/.cinepatch"


def prepare_env(home: Path) -> None:
    """Point Gradio's and Python's temp folders into the data folder and turn analytics off."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(tmp)
    os.environ["TMPDIR"] = str(tmp)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile
    tempfile.tempdir = str(tmp)


def launch(home: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           max_upload_mb: int = 200, backend: str | None = None, block: bool = True, auth=None):
    """-> (demo, url). Builds the library and job queue in `home`, then serves the page."""
    home = Path(home or os.environ.get("CINEPATCH_HOME") or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    if "gradio" in sys.modules:  # gradio reads its temp folder at import: ours only counts if we set it first
        print("cinepatch: note: gradio was imported before the studio set its temp folder", file=sys.stderr)
    prepare_env(home)
    import gradio as gr

    from studio.app import CSS, Studio, build
    from studio.jobs import Jobs
    from studio.library import Library
    os.chdir(home)  # a path echoed by a handler can then only name files of the data folder
    lib = Library(home)
    studio = Studio(lib, Jobs(lib, backend), max_upload_mb)
    demo = build(studio)
    demo.queue(default_concurrency_limit=8)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(home / "videos"), str(home / "exports")],
                            max_file_size=f"{max_upload_mb}mb", enable_monitoring=False, strict_cors=True,
                            prevent_thread_lock=not block, quiet=not block, footer_links=["api"], auth=auth,
                            css=CSS, theme=gr.themes.Soft(), ssr_mode=False, mcp_server=False, pwa=False)
    return demo, url


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None, help=f"data folder (default $CINEPATCH_HOME or {DEFAULT_HOME})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link (off by default)")
    p.add_argument("--max-upload-mb", type=int, default=200, help="largest upload accepted (default 200)")
    p.add_argument("--backend", default=None, help="toy (default when its weights are installed) or reference")


def run(a) -> None:
    from engine.params import InputError
    if not (1 <= a.port <= 65535):
        raise InputError(f"port: {a.port} is not a port; allowed 1 to 65535")
    if a.max_upload_mb < 1:
        raise InputError(f"max-upload-mb: {a.max_upload_mb} is too small; allowed 1 or more")
    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.share:
        print(f"cinepatch: note: serving on {a.host}: anyone who can reach it can use the studio", file=sys.stderr)
    launch(a.home, a.host, a.port, a.share, a.max_upload_mb, a.backend, block=True)


def register(sub) -> None:
    """Add the `studio` verb to the `cinepatch` CLI (found through the cinepatch.verbs entry point)."""
    p = sub.add_parser("studio", help="start the studio page at http://127.0.0.1:7860")
    add_arguments(p)
    p.set_defaults(run=run)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio", description="Start the cinepatch studio page.")
    add_arguments(ap)
    from engine.params import InputError
    try:
        run(ap.parse_args(argv))
    except InputError as e:
        print(f"cinepatch: error: {e}", file=sys.stderr)
        return 2
    return 0
