"""Start the studio: `cinepatch studio` (or `python -m studio`): the page at / and the Videos API at /v1.

Safe by default for a local server (../shared/SECURITY.md): 127.0.0.1 only (any other address
needs an API key), no share link, files served only from the data folder's videos/ and exports/,
uploads capped, analytics off, Gradio's temp folder inside the data folder (set before gradio is
imported: later has no effect).
"""
from __future__ import annotations

import argparse
import hmac
import os
import sys
import threading
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


LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Files of the data folder that no request may name, even though the folder is the working directory.
PRIVATE = ("library.sqlite", "library.sqlite-wal", "library.sqlite-shm", "studio.lock")


def launch(home: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = 200,
           backend: str | None = None, block: bool = True, api_key: str | None = None, ray: dict | None = None):
    """-> (server, url). Builds the library and job queues in `home`, then serves the page at / and the
    Videos API at /v1 from one app (studio/videos_api.py). `ray`: {"address", "workers", "gpus"} to run the
    jobs on a Ray cluster (studio/workers_ray.py) instead of in this process."""
    from engine.params import InputError
    if host not in LOOPBACK and not api_key:
        raise InputError(f"host: serving on {host} needs an API key (--api-key KEY or CINEPATCH_API_KEY): "
                         "without one anyone who can reach it could use the studio")
    cluster = _join_ray(**ray) if ray else None   # an unreachable cluster stops the studio here, in one line
    home = Path(home or os.environ.get("CINEPATCH_HOME") or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    from studio.library import Library
    lib = Library(home, own=True)   # first, and refused at once while another studio runs on this folder
    if "gradio" in sys.modules:  # gradio reads its temp folder at import: ours only counts if we set it first
        print("cinepatch: note: gradio was imported before the studio set its temp folder", file=sys.stderr)
    prepare_env(home)
    import gradio as gr
    import uvicorn

    from studio.app import CSS, Studio, build
    from engine.backends.registry import default_backend
    from studio.jobs import Jobs
    from studio.videos_api import create_app
    os.chdir(home)  # a path echoed by a handler can then only name files of the data folder
    make_jobs = (lambda name: Jobs(lib, name, workers=cluster.pool(name))) if cluster else None
    studio = Studio(lib, make_jobs(backend or default_backend()) if cluster else Jobs(lib, backend), max_upload_mb,
                    make_jobs=make_jobs)
    studio.resume()  # jobs a restart left queued run again, in order
    demo = build(studio)
    demo.queue(default_concurrency_limit=8)
    app = create_app(studio, api_key)
    # The page's own login takes the same key (any user name) when one is set.
    auth = (lambda _user, password: hmac.compare_digest(password.encode(), api_key.encode())) if api_key else None
    gr.mount_gradio_app(app, demo, "/", server_name=host, server_port=port, footer_links=["api"],
                        allowed_paths=[str(home / "videos"), str(home / "exports")], max_file_size=f"{max_upload_mb}mb",
                        enable_monitoring=False, ssr_mode=False, mcp_server=False, pwa=False, auth=auth,
                        auth_message="The API key this studio was started with" if api_key else None,
                        show_error=False,  # only our own messages (gr.Error) reach the page; Gradio's may name paths
                        css=CSS, theme=gr.themes.Soft(), blocked_paths=[str(home / n) for n in PRIVATE])
    # Mounted Blocks never count as launched, and Gradio checks the paths inside a request's FileData only
    # for launched ones: without this any file the server can read was copied into tmp/ and served.
    demo.has_launched = True
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    if not block:
        threading.Thread(target=server.run, name="cinepatch-server", daemon=True).start()
        return server, url
    print(f"cinepatch: the studio is at {url} and the Videos API at {url}v1", file=sys.stderr)
    server.run()
    return server, url


def _join_ray(address: str, workers: int | None = None, gpus: str | None = None):
    from engine.params import InputError
    try:
        from studio.workers_ray import Cluster, parse_gpus
    except ImportError:
        raise InputError("ray: running jobs on a Ray cluster needs Ray: pip install 'cinepatch[ray]'") from None
    if workers is not None and workers < 1:
        raise InputError(f"ray-workers: {workers} is too few; allowed 1 or more")
    return Cluster.connect(address, workers, parse_gpus(gpus))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None, help=f"data folder (default $CINEPATCH_HOME or {DEFAULT_HOME})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; any other needs --api-key)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=int, default=200, help="largest upload accepted (default 200)")
    p.add_argument("--backend", default=None, help="toy (default when its weights are installed) or reference")
    p.add_argument("--memory", default=None,
                   help="real models' memory setting: auto, none, model or group, with +fp8 +tiling +slicing "
                        "(default $CINEPATCH_MEMORY, else auto: each model's own; the page can change it per model)")
    p.add_argument("--api-key", default=None,
                   help="require `Authorization: Bearer KEY` on /v1 and this key at the page's login "
                        "(default $CINEPATCH_API_KEY)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run jobs on a Ray cluster: auto (the one `ray start` began here), host:6379 or "
                        "ray://host:10001 (default $CINEPATCH_RAY_ADDRESS; none: in this process)")
    p.add_argument("--ray-workers", type=int, default=None,
                   help="Ray workers per model (default: the cluster's GPUs / GPUs per worker)")
    p.add_argument("--ray-gpus", default=None, metavar="N|MODEL=N,...",
                   help="GPUs per Ray worker, e.g. 1 or ltx=2,wan=4 (default 1 on a cluster with GPUs, else 0)")


def run(a) -> None:
    from engine.params import InputError
    if not (1 <= a.port <= 65535):
        raise InputError(f"port: {a.port} is not a port; allowed 1 to 65535")
    if a.max_upload_mb < 1:
        raise InputError(f"max-upload-mb: {a.max_upload_mb} is too small; allowed 1 or more")
    key = a.api_key or os.environ.get("CINEPATCH_API_KEY") or None
    if key is not None and (len(key) < 8 or not key.isprintable() or " " in key):
        raise InputError("api-key: use at least 8 printable characters without spaces")
    if a.memory:   # checked now, in one line; every real model loads with it unless the page picks another
        from engine.backends.memory import parse
        parse(a.memory)
        os.environ["CINEPATCH_MEMORY"] = a.memory
    address = a.ray or os.environ.get("CINEPATCH_RAY_ADDRESS") or None
    ray = {"address": address, "workers": a.ray_workers, "gpus": a.ray_gpus} if address else None
    launch(a.home, a.host, a.port, a.max_upload_mb, a.backend, block=True, api_key=key, ray=ray)


def register(sub) -> None:
    """Add the `studio` verb to the `cinepatch` CLI (found through the cinepatch.verbs entry point)."""
    p = sub.add_parser("studio", help="start the studio page at http://127.0.0.1:7860 (and the Videos API at /v1)")
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
