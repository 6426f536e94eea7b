"""The page's API endpoints (/generate, /storyboard, /remix, /blend, /loop, /extend, /recut, /upload): the same
request objects the tabs build, as JSON, with media uploaded in the same call."""
from __future__ import annotations

import gradio as gr

from engine.params import InputError
from engine.requests import OPS
from studio.pages.common import SOURCES, Studio, gr_error



def with_files(studio: Studio, request, files) -> dict:
    """Request fields written "file:K" name the K-th uploaded file of this call."""
    if isinstance(request, str):
        from engine.timeline import parse_json
        request = parse_json(request, "request")
    if not isinstance(request, dict):
        raise InputError("request: expected a JSON object")
    files = files or []
    req = dict(request)
    for k in SOURCES:
        v = req.get(k)
        if isinstance(v, str) and v.startswith("file:"):
            try:
                req[k] = studio.import_upload(files[int(v[5:])], k)
            except (ValueError, IndexError):
                raise InputError(f"{k}: {v!r} names no uploaded file; {len(files)} were sent") from None
    return req


def endpoint(studio: Studio, op: str):
    def call(request, files):
        """Run one request to completion -> (job result JSON, the first video)."""
        try:
            job = studio.submit(op, with_files(studio, request, files))
            row = studio.wait(job)
        except InputError as e:
            raise gr_error(e) from None
        vids = studio.library.videos_of_job(job)
        out = {"job": job, "state": row["state"], "error": row["error"],
               "videos": [{k: v[k] for k in ("id", "ref", "kind", "label", "seed", "width", "height", "fps",
                                             "duration_s", "lineage")} for v in vids]}
        if row["state"] != "done":
            raise gr.Error(f"job {job} {row['state']}: {row['error'] or ''}".strip(), print_exception=False)
        return out, vids[0]["path"] if vids else None
    call.__name__ = f"api_{op}"
    return call


def upload_endpoint(studio: Studio):
    def upload(files):
        """Upload media -> their references ('upload:<name>') for later requests."""
        try:
            return {"refs": [studio.import_upload(f, f"files[{i}]") for i, f in enumerate(files or [])]}
        except InputError as e:
            raise gr_error(e) from None
    return upload


def build(studio: Studio) -> None:
    """Hidden components and buttons that only the API uses."""
    req, files = gr.JSON(visible=False), gr.File(file_count="multiple", visible=False)
    out, video = gr.JSON(visible=False), gr.Video(visible=False)
    for op in OPS:
        gr.Button(visible=False).click(endpoint(studio, op), [req, files], [out, video], api_name=op,
                                       concurrency_limit=4)
    gr.Button(visible=False).click(upload_endpoint(studio), files, out, api_name="upload")
