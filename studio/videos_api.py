"""The Videos API: the endpoints of OpenAI's retired Sora `/v1/videos`, over the studio's jobs and library.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:7860/v1", api_key="local")
    video = client.videos.create_and_poll(prompt="a red circle moving left", seconds="2", size="128x72")
    client.videos.download_content(video.id).write_to_file("a.mp4")

A video here is a studio job, `video_<job id>`: jobs started in the page are listed here and
videos made here appear in the page's Library. Its content is the job's first video. Sizes
and lengths are snapped to what the model accepts and reported as they will be made.
cinepatch's own operations (storyboard, blend, loop) are under /v1/cinepatch/. Every error
is `{"error": {"message", "type", "code", "param"}}` with its HTTP status; ids are matched by
pattern and looked up in SQLite, and media come from the library or from uploads, never
from a path in a request.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.params import LIMITS, PARAMS, InputError

ID = re.compile(r"video_(\d{1,12})")
SORA_MODELS = ("sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08")
DEFAULT_SIZE, DEFAULT_SECONDS = "720x1280", "4"   # the Sora API's defaults, snapped like any size
POLL_AFTER_MS = 250                              # the SDK's poll helpers wait this long between retrievals
MAX_PROMPT = int(LIMITS["prompt_chars"].max)
MAX_POINTS = int(LIMITS["curve_points"].max)
FORM_SLACK = 1 << 16                             # bytes of form fields allowed beside an upload of the cap
STATUS = {"queued": "queued", "running": "in_progress", "done": "completed", "failed": "failed",
          "cancelled": "failed", "interrupted": "failed"}
API_FIELD = {"duration_s": "seconds", "extend_s": "seconds", "resolution": "size", "aspect": "size"}
SAMPLING = ("steps", "guidance", "shift", "solver", "seed", "fps", "negative_prompt", "preset")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def bad(e: InputError | str, code: str = "invalid_value") -> ApiError:
    """A 400 from an engine message ("field: what is wrong"), its field as `param`."""
    msg = str(e).splitlines()[0] if str(e) else "bad request"
    field = msg.split(":", 1)[0] if ":" in msg and " " not in msg.split(":", 1)[0] else None
    return ApiError(400, msg, code, field)


def not_found(video_id: str, field: str = "video_id") -> ApiError:
    return ApiError(404, f"{field}: no video {str(video_id)[:80]!r} here", "not_found", field)


def error_response(status: int, message: str, code: str | None, param: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error", 500: "server_error"}.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": param}}, status,
                        headers=headers)


# ----------------------------------------------------------------------------- shapes (the openai package's types)
class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None   # local files never expire
    model: str = Field(description="the cinepatch backend that makes it")
    prompt: str | None = None
    seconds: str = Field(description="length as made (for an extension: the stitched total)")
    size: str = Field(description="WxH as made, after snapping to what the model accepts")
    remixed_from_video_id: str | None = None
    seed: int | None = Field(None, description="the seed it is made with (a fresh one unless the request set one; "
                                               "known once completed): send it as `seed` to make the same video again")
    error: VideoError | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedVideo(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 409, 413)}


# ----------------------------------------------------------------------------- requests
class Sampling(BaseModel):
    """cinepatch's own settings, accepted by every call that makes a video (OpenAI clients send them in extra_body)."""
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="a cinepatch backend (toy, ltx, wan); sora-2 and sora-2-pro "
                                                "mean the default one")
    steps: int | None = Field(None, description=PARAMS["steps"].help)
    guidance: float | None = Field(None, description=PARAMS["guidance"].help)
    shift: float | None = Field(None, description=PARAMS["shift"].help)
    solver: str | None = Field(None, description=PARAMS["solver"].help)
    audio: bool | None = Field(None, description=PARAMS["audio"].help)
    seed: int | None = Field(None, description=PARAMS["seed"].help)
    fps: float | None = Field(None, description=PARAMS["fps"].help)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT)
    preset: str | None = Field(None, description="a preset of presets/*.toml")

    def settings(self) -> dict:
        return self.model_dump(include=set(SAMPLING), exclude_none=True)


class CreateVideo(Sampling):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    seconds: StrictStr | StrictFloat | StrictInt | None = Field(None, description="any length in seconds (snapped to the frame grid); "
                                                          f"default 4, at most {LIMITS['seconds'].max:g}")
    size: str | None = Field(None, description="WxH, any size (snapped to what the model accepts); default 720x1280")
    input_reference: dict[str, Any] | None = Field(None, description="JSON: {\"image_url\": \"data:image/...;base64,...\"}"
                                                                      "; multipart: an image file. Pinned at 0 s")


class RemixVideo(Sampling):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    amount: float | None = Field(None, description=PARAMS["amount"].help)


class VideoRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class ExtendVideo(Sampling):
    prompt: str = Field(max_length=MAX_PROMPT)
    seconds: StrictStr | StrictFloat | StrictInt = Field(description="seconds of new video; the result's `seconds` is the stitched total")
    video: VideoRef | str = Field(description="{\"id\": \"video_...\"} of a completed video, or an uploaded clip")


class StoryboardVideo(Sampling):
    storyboard: dict[str, Any] = Field(description="the engine's storyboard JSON (see README); a card's `path` and "
                                                   "an assembled piece's `source` are a video id (video_...), "
                                                   f"lib:<id> or upload:<name>; at most {LIMITS['cards'].max:g} cards")


class BlendVideo(Sampling):
    a: str = Field(description="id of the first video (mix 0)")
    b: str = Field(description="id of the second video (mix 1)")
    curve: list[list[float]] | str = Field(description="[[time 0..1, mix 0..1], ...] or \"0:0,0.5:0.5,1:1\"; "
                                                       f"at most {MAX_POINTS} points")
    repaint: list[list[float]] | str | None = Field(None, description="how much is repainted over time (default: "
                                                                      f"most where the mix is 0.5); at most {MAX_POINTS} points")
    prompt_a: str = Field("", max_length=MAX_PROMPT)
    prompt_b: str = Field("", max_length=MAX_PROMPT)
    seconds: StrictStr | StrictFloat | StrictInt | None = None


class LoopVideo(Sampling):
    video: str = Field(description="id of a completed video")
    prompt: str = Field("", max_length=MAX_PROMPT)
    bridge_s: float | None = Field(None, description=PARAMS["bridge_s"].help)
    context_s: float | None = Field(None, description=PARAMS["context_s"].help)


class MemorySetting(BaseModel):
    """A real model's memory setting, as the page's Memory dropdown picks it (docs/real-models.md)."""
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="a real model set up here (ltx, ltx2, wan, wan22-5b, wan22-14b)")
    memory: str = Field(max_length=80, description="auto, none, model or group, with +fp8 +tiling +slicing")


def validated(model: type[BaseModel], data: dict) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(400, *_first_error(e.errors(), model)) from None


def _first_error(errors, model=None) -> tuple[str, str, str]:
    """pydantic's errors -> (one-line message naming the field, code, field)."""
    err = errors[0]
    kind = err.get("type", "")
    if kind in ("json_invalid", "json_type"):
        return "body: not valid JSON; send a JSON object or multipart/form-data", "invalid_json", "body"
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path") and not _type_tag(p)]
    field = ".".join(loc[:1] + [f"[{p}]" if p.isdigit() else p for p in loc[1:]]).replace(".[", "[") or "body"
    if kind == "extra_forbidden" and model is not None:
        return f"{field}: unknown field; allowed: {', '.join(model.model_fields)}", "unknown_parameter", field
    if kind == "missing":
        return f"{field}: missing", "missing_required_parameter", field
    return f"{field}: {err.get('msg', 'invalid')[:200]}", "invalid_value", field


def _type_tag(part) -> bool:
    """A union member's name in a pydantic error location (`seconds.str`, `video.VideoRef.id`), not a field."""
    return isinstance(part, str) and bool(re.fullmatch(r"[A-Z]\w*|(str|int|float|bool|dict|list|none|function-\w+)(\[.*\])?"
                                                      r"|.*\[.*", part))


# ----------------------------------------------------------------------------- the API over a Studio
class VideosApi:
    """What the endpoints share: the studio (library + job queues) and the sizes already worked out."""

    def __init__(self, studio):
        self.studio, self.library = studio, studio.library
        self._planned: dict[int, tuple[str, str]] = {}

    # -- jobs <-> videos
    def job(self, video_id: str, field: str = "video_id") -> dict:
        m = ID.fullmatch(video_id or "") if isinstance(video_id, str) else None
        job = self.library.job(int(m.group(1))) if m and m.group(1) == str(int(m.group(1))) else None  # one spelling
        if job is None:
            raise not_found(video_id, field)
        return job

    def video(self, job: dict) -> Video:
        state, req = job["state"], job["request"]
        size, seconds = self._size_of(job)
        progress = {"done": 100, "queued": 0}.get(state, min(99, 100 * job["step"] // job["steps"]) if job["steps"] else 0)
        error = None
        if STATUS[state] == "failed":
            error = VideoError(code=state, message=job["error"] or f"the job was {state}")
        return Video(id=f"video_{job['id']}", status=STATUS[state], progress=progress, created_at=int(job["created"]),
                     completed_at=int(job["finished"]) if job["finished"] and state != "queued" else None,
                     model=job["backend"], prompt=req.get("prompt") if isinstance(req.get("prompt"), str) else job["label"],
                     seconds=seconds, size=size, remixed_from_video_id=self._source_id(job) if job["op"] == "remix" else None,
                     seed=self._seed(job), error=error)

    def _seed(self, job: dict) -> int | None:
        """The seed asked for, else (drawn by the engine) the one its video records once made."""
        asked = job["request"].get("seed")
        if isinstance(asked, int) or job["state"] != "done":
            return asked if isinstance(asked, int) else None
        vids = self.library.videos_of_job(job["id"])
        return vids[0]["seed"] if vids else None

    def _size_of(self, job: dict) -> tuple[str, str]:
        """("WxH", "seconds") as made, or as it will be made while the job waits."""
        vids = self.library.videos_of_job(job["id"]) if job["state"] == "done" else []
        if vids:
            self._planned.pop(job["id"], None)  # made: the planned size is not needed again
            return f"{vids[0]['width']}x{vids[0]['height']}", _secs(vids[0]["duration_s"])
        if job["id"] not in self._planned:
            self._planned[job["id"]] = self._plan(job)
        return self._planned[job["id"]]

    def _plan(self, job: dict) -> tuple[str, str]:
        from engine.api import planned_size
        from engine.requests import build
        try:
            tl, _, _ = build(job["op"], job["request"], self.library.resolve)
            try:
                spec = self.studio.queue(job["backend"]).spec  # from the model's configs: listing loads nothing
            except InputError:  # a backend not set up here any more
                spec = None
            w, h, s = planned_size(tl, spec)
            return f"{w}x{h}", _secs(s)
        except Exception:  # a source deleted since, say: the size is unknown, the job is still listed
            return "0x0", "0"

    def _source_id(self, job: dict) -> str | None:
        ref = job["request"].get("video")
        m = re.fullmatch(r"lib:(\d+)", ref) if isinstance(ref, str) else None
        src = self.library.video(int(m.group(1))) if m else None
        return f"video_{src['job_id']}" if src and src["job_id"] else None

    def source(self, video_id: str, field: str) -> dict:
        """The first library video of a completed video (404 unknown, 409 unfinished)."""
        job = self.job(video_id, field)
        if job["state"] != "done":
            raise ApiError(409, f"{field}: {video_id} is {STATUS[job['state']]}, not completed; "
                                "wait until its status is completed", "video_not_ready", field)
        vids = self.library.videos_of_job(job["id"])
        if not vids or not Path(vids[0]["path"]).is_file():
            raise ApiError(404, f"{field}: the video of {video_id} was deleted", "not_found", field)
        return vids[0]

    def ref(self, value: str, field: str) -> str:
        """A media reference in a request: a video id becomes its library item; lib:/upload: pass as they are."""
        if isinstance(value, str) and value.startswith("video_"):
            return self.source(value, field)["ref"]
        return value

    def served(self, path: str | None, video_id: str, variant: str) -> str:
        """A library file fit to send: a regular file inside the data folder, not a link planted there."""
        home = self.library.home.resolve()
        p = Path(path) if path else None
        if p is None or p.is_symlink() or not p.is_file() or home not in p.resolve().parents:
            raise ApiError(404, f"variant: {video_id} has no readable {variant} (its file is missing or damaged)",
                           "not_found", "variant")
        return str(p)

    # -- making videos
    def backend(self, model: str | None) -> str:
        from engine.backends.registry import configured
        if model is None or model in SORA_MODELS:
            return self.studio.default
        if model not in configured():
            raise ApiError(400, f"model: {model[:60]!r} is not available here; use one of "
                                f"{', '.join([*configured(), 'sora-2', 'sora-2-pro'])}", "invalid_value", "model")
        return model

    def submit(self, op: str, request: dict, model: str | None) -> Video:
        backend = self.backend(model)
        try:
            job = self.studio.queue(backend).submit(op, request)
        except InputError as e:
            err = bad(e)
            if err.param in API_FIELD and err.param not in request:  # an engine field this API names otherwise
                err.message = API_FIELD[err.param] + err.message[len(err.param):]
                err.param = API_FIELD[err.param]
            if op == "storyboard" and err.param and err.param.split("[")[0].split(".")[0] not in (*SAMPLING, "storyboard"):
                err.message, err.param = f"storyboard.{err.message}", f"storyboard.{err.param}"  # where it was sent
            raise err from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # odd shapes inside a storyboard
            raise ApiError(400, f"request: could not be read ({e.__class__.__name__}: {str(e)[:120]})",
                           "invalid_value") from None
        return self.video(self.library.job(job))

    def size_fields(self, size: str, model: str | None) -> dict:
        """'WxH' -> the aspect and the short side nearest to one the backend was made for."""
        from engine.timeline import parse_aspect
        from studio.app import BACKEND_RESOLUTIONS
        m = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size.strip().lower()) if isinstance(size, str) else None
        if not m or min(int(m.group(1)), int(m.group(2))) < 1:
            raise ApiError(400, f"size: {str(size)[:40]!r} is not a size; write WIDTHxHEIGHT, e.g. 1280x720",
                           "invalid_value", "size")
        w, h = int(m.group(1)), int(m.group(2))
        g = math.gcd(w, h)
        aspect = f"{w // g}:{h // g}"
        try:
            parse_aspect(aspect, "size")
        except InputError as e:
            raise bad(e) from None
        p, short = PARAMS["resolution"], min(w, h)
        allowed = BACKEND_RESOLUTIONS.get(self.backend(model))
        res = min(allowed, key=lambda r: (abs(r - short), r)) if allowed else int(min(max(short, p.min), p.max))
        return {"aspect": aspect, "resolution": res}  # the engine snaps it to the model's grid

    def upload(self, file, field: str, kind: str | None = None) -> str:
        """An uploaded file (or a data: URL's bytes) -> 'upload:<name>', checked to be a readable image or video."""
        from engine.video_io import probe
        from studio.library import safe_name
        folder = Path(tempfile.mkdtemp(prefix="api-", dir=self.library.home / "tmp"))
        try:
            if isinstance(file, tuple):
                name, data = file
                path = folder / safe_name(name)
                path.write_bytes(data)
            else:
                path = folder / safe_name(file.filename or field)
                with open(path, "wb") as out:
                    shutil.copyfileobj(file.file, out)
            if path.stat().st_size > self.studio.max_upload_mb * 2**20:
                raise ApiError(413, f"{field}: the file is larger than the {self.studio.max_upload_mb} MB upload limit",
                               "file_too_large", field)
            try:
                info = probe(path, field=field)
                if kind and info.kind != kind:
                    raise InputError(f"{field}: {path.name!r} is a {info.kind}; give an {kind}")
                return self.studio.import_upload(path, field)
            except InputError as e:  # say the name it was sent as, not where it was kept
                raise bad(str(e).replace(str(path), path.name)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _secs(s: float) -> str:
    return f"{round(float(s), 3):g}"


def seconds_value(value, field: str = "seconds") -> float:
    try:
        if isinstance(value, bool):  # JSON true is not one second
            raise TypeError
        s = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{field}: {str(value)[:40]!r} is not a number of seconds; allowed "
                            f"{PARAMS['duration_s'].min:g} to {PARAMS['duration_s'].max:g}", "invalid_value", field) from None
    try:
        LIMITS["seconds"].check(s, field)
        return PARAMS["duration_s"].check(s, field)
    except InputError as e:
        raise bad(e) from None


def image_url(ref: dict) -> tuple[str, bytes]:
    """input_reference as JSON: only a data: URL (nothing is fetched from the network)."""
    url = ref.get("image_url")
    if not isinstance(url, str):
        raise ApiError(400, "input_reference: give {\"image_url\": \"data:image/png;base64,...\"} or upload the image "
                            "as multipart form data (file ids are not kept here)", "invalid_value", "input_reference")
    m = re.fullmatch(r"data:image/([a-z]+);base64,(.*)", url, re.S)
    if not m:
        raise ApiError(400, "input_reference.image_url: only data:image/...;base64 URLs are accepted; nothing is "
                            "fetched from the network", "invalid_value", "input_reference")
    try:
        return f"reference.{m.group(1)}", base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "input_reference.image_url: the base64 data does not decode", "invalid_value",
                       "input_reference") from None


async def read_body(request: Request) -> tuple[dict, dict]:
    """JSON or form data -> (fields, files). Form names like `video[id]` become {"video": {"id": ...}}."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=4, max_fields=64)
        except Exception as e:  # python-multipart's and starlette's parse errors have no common base
            raise ApiError(400, f"body: not readable form data ({str(e)[:100]})", "invalid_value") from None
        fields, files = {}, {}
        for k, v in form.multi_items():
            if isinstance(v, UploadFile):
                files[k] = v
            elif m := re.fullmatch(r"(\w+)\[(\w+)\]", k):
                fields.setdefault(m.group(1), {})
                if isinstance(fields[m.group(1)], dict):
                    fields[m.group(1)][m.group(2)] = v
            else:
                fields[k] = v
        return fields, files
    body = await request.body()
    if not body.strip():
        return {}, {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "body: not valid JSON; send a JSON object or multipart/form-data", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body: expected a JSON object", "invalid_json")
    return data, {}


def form_endpoint(handler):
    """An endpoint taking JSON or multipart (the SDK sends multipart): the body is read here, the work done
    in a worker thread as FastAPI does for plain functions."""
    async def endpoint(request: Request):
        fields, files = await read_body(request)
        return await run_in_threadpool(handler, fields, files)
    endpoint.__name__ = handler.__name__
    return endpoint


def _body_doc(model: type[BaseModel], files: dict[str, str]) -> dict:
    """The OpenAPI requestBody of an endpoint that takes JSON or multipart (the SDK sends multipart)."""
    schema = model.model_json_schema()
    form = json.loads(json.dumps(schema))
    for name, desc in files.items():
        form["properties"][name] = {"type": "string", "format": "binary", "description": desc}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": form}}}}


# ----------------------------------------------------------------------------- guard: key and body size
GRADIO_DOCS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")   # Gradio's app has FastAPI's defaults
LOGIN = ("/login", "/login/")


class Throttle:
    """Failed key checks per client address: BURST at once, then one each EVERY seconds, so a key cannot be
    guessed at speed (it was 374 guesses a second). A client at full allowance is forgotten."""
    BURST, EVERY = 10, 6.0

    def __init__(self, clock=time.monotonic):
        self.clock, self.spent = clock, {}   # client -> (failures still counted, when last counted)

    def _owed(self, client: str) -> float:
        n, t = self.spent.get(client, (0.0, 0.0))
        return max(0.0, n - (self.clock() - t) / self.EVERY)

    def wait_s(self, client: str) -> float:
        """Seconds until this client may try a key again (0: now)."""
        return max(0.0, (self._owed(client) - self.BURST + 1) * self.EVERY)

    def failed(self, client: str) -> None:
        self.spent = {c: v for c, v in self.spent.items() if c == client or self._owed(c) > 0}
        self.spent[client] = (self._owed(client) + 1, self.clock())


class Guard:
    """Every /v1 request: the API key when one is set (401), a body no larger than the cap (413). With a key,
    also Gradio's own API docs, and key guesses (here and at the page's login) throttled per client (429)."""

    def __init__(self, app, api_key: str | None, max_bytes: int):
        self.app, self.api_key, self.max_bytes, self.throttle = app, api_key, max_bytes, Throttle()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        v1 = path == "/v1" or path.startswith("/v1/")
        keyed = self.api_key and (path in GRADIO_DOCS or path in LOGIN and scope.get("method") == "POST")
        if scope["type"] != "http" or not (v1 or keyed):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?",))[0]
        if self.api_key and (wait := self.throttle.wait_s(client)):
            return await error_response(429, f"Authorization: too many wrong keys; try again in {math.ceil(wait)} s",
                                        "rate_limit_exceeded", None,
                                        {"Retry-After": str(math.ceil(wait))})(scope, receive, send)
        headers = Headers(scope=scope)
        if path in LOGIN:
            return await self.app(scope, receive, self._counting_failures(send, client))
        if self.api_key and not _authorized(headers.get("authorization", ""), self.api_key):
            if headers.get("authorization"):  # a key was offered and was wrong: a guess
                self.throttle.failed(client)
            return await error_response(401, "Authorization: send `Authorization: Bearer <key>` with the key the "
                                             "server was started with", "invalid_api_key")(scope, receive, send)
        if not v1:
            return await self.app(scope, receive, send)
        form = headers.get("content-type", "").lower().startswith("multipart/form-data")
        cap = self.max_bytes if form else int(LIMITS["json_kb"].max) * 1024   # only a form carries an upload
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            return await self.too_large(cap)(scope, receive, send)
        received, answered = 0, False

        async def counted():  # a body sent without a length is counted as it arrives
            nonlocal received, answered
            msg = await receive()
            received += len(msg.get("body", b""))
            if msg["type"] == "http.request" and received > cap and not answered:
                answered = True
                await self.too_large(cap)(scope, receive, send)
                return {"type": "http.disconnect"}
            return msg

        async def unless_answered(msg):
            if not answered:
                await send(msg)
        try:
            await self.app(scope, counted, unless_answered)
        except Exception:
            if not answered:
                raise

    def _counting_failures(self, send, client: str):
        """The page's login answers 400 to a wrong key: count it like a wrong key at /v1."""
        async def watched(msg):
            if msg["type"] == "http.response.start" and msg["status"] in (400, 401):
                self.throttle.failed(client)
            await send(msg)
        return watched

    def too_large(self, cap: int) -> JSONResponse:
        if cap == self.max_bytes:
            return error_response(413, f"body: larger than the {cap // 2**20} MB upload limit", "file_too_large")
        return error_response(413, f"body: larger than {cap // 1024} KB, the most a JSON request may send here "
                                   "(upload media as multipart/form-data)", "request_too_large", "body")


def _authorized(header: str, key: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


# ----------------------------------------------------------------------------- the app
def create_app(studio, api_key: str | None = None) -> FastAPI:
    """A FastAPI app serving /v1 (mount the studio page on it afterwards, at "/")."""
    api = VideosApi(studio)
    app = FastAPI(title="cinepatch Videos API", version="1", docs_url="/v1/docs", redoc_url=None,
                  openapi_url="/v1/openapi.json",
                  description="The endpoints of OpenAI's Videos API (`/v1/videos`), served by a local cinepatch, "
                              "plus cinepatch's own operations under `/v1/cinepatch/`. Authenticate with "
                              "`Authorization: Bearer <key>` when the server was started with an API key.")
    app.add_middleware(Guard, api_key=api_key, max_bytes=studio.max_upload_mb * 2**20 + FORM_SLACK)
    _handlers(app)
    poll = {"openai-poll-after-ms": str(POLL_AFTER_MS)}

    def create_video(fields: dict, files: dict) -> Video:
        image = files.pop("input_reference", None)
        body = validated(CreateVideo, fields)
        req = {"prompt": body.prompt, "duration_s": seconds_value(DEFAULT_SECONDS if body.seconds is None else body.seconds),
               **api.size_fields(body.size or DEFAULT_SIZE, body.model), **body.settings()}
        if body.input_reference is not None:
            image = image_url(body.input_reference)
        if image is not None:
            req.update(image=api.upload(image, "input_reference", kind="image"), at_s=0.0)
        return api.submit("generate", req, body.model)
    app.post("/v1/videos", response_model=Video, responses=ERRORS, tags=["videos"], summary="Create a video",
             openapi_extra=_body_doc(CreateVideo, {"input_reference": "an image pinned at 0 s"}))(form_endpoint(create_video))

    @app.get("/v1/videos", response_model=VideoList, responses=ERRORS, tags=["videos"], summary="List videos")
    def list_videos(after: str | None = Query(None, description="id of the last video of the previous page"),
                    limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc"):
        m = ID.fullmatch(after) if after is not None else None
        if after is not None and not m:
            raise ApiError(400, f"after: {after[:60]!r} is not a video id (video_<n>)", "invalid_value", "after")
        rows = api.library.job_page(int(m.group(1)) if m else None, limit + 1, ascending=order == "asc")
        data = [api.video(j) for j in rows[:limit]]
        return VideoList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                         has_more=len(rows) > limit)

    @app.get("/v1/videos/{video_id}", response_model=Video, responses=ERRORS, tags=["videos"], summary="Retrieve a video")
    def retrieve_video(video_id: str):
        return JSONResponse(api.video(api.job(video_id)).model_dump(mode="json"), headers=poll)

    @app.delete("/v1/videos/{video_id}", response_model=DeletedVideo, responses=ERRORS, tags=["videos"],
                summary="Delete a video (a queued or running job is cancelled first)")
    def delete_video(video_id: str):
        job = api.job(video_id)
        if job["state"] in ("queued", "running"):
            studio.cancel(job["id"])  # returns at once; the worker stops at its next check and attaches nothing
        api._planned.pop(job["id"], None)
        return DeletedVideo(id=video_id, deleted=api.library.delete_job(job["id"]))

    _made_from_routes(app, api)
    _cinepatch_routes(app, api)

    _catch_all(app)  # last: it answers whatever no route above took
    return app


def _made_from_routes(app: FastAPI, api: VideosApi):
    """The /v1/videos routes that start from a completed video: its files, a remix, an extension."""
    @app.get("/v1/videos/{video_id}/content", responses={200: {"content": {"video/mp4": {}, "image/jpeg": {}}},
                                                         **ERRORS},
             response_class=FileResponse, tags=["videos"], summary="Download the mp4, a thumbnail or a sprite sheet")
    def video_content(video_id: str, variant: Literal["video", "thumbnail", "spritesheet"] = "video"):
        item = api.source(video_id, "video_id")
        if variant == "video":
            return FileResponse(api.served(item["path"], video_id, variant), media_type="video/mp4",
                                filename=f"{video_id}.mp4")
        try:
            path = item["thumb_path"] if variant == "thumbnail" else str(api.library.spritesheet(item["id"]))
        except InputError:  # the library's file is damaged: the sheet cannot be drawn from it
            path = None
        return FileResponse(api.served(path, video_id, variant), media_type="image/jpeg",
                            filename=f"{video_id}.{variant}.jpg")

    @app.post("/v1/videos/{video_id}/remix", response_model=Video, responses=ERRORS, tags=["videos"],
              summary="Remix a completed video with a new prompt")
    def remix_video(video_id: str, body: RemixVideo):
        src = api.source(video_id, "video_id")
        req = {"video": src["ref"], "prompt": body.prompt, "resolution": _short(src), **body.settings()}
        if body.amount is not None:
            req["amount"] = body.amount
        return api.submit("remix", req, body.model)

    def extend_video(fields: dict, files: dict) -> Video:
        clip = files.pop("video", None)
        if clip is not None:
            fields.setdefault("video", "upload")
        body = validated(ExtendVideo, fields)
        extra = seconds_value(body.seconds)
        if clip is not None:
            ref, short = api.upload(clip, "video", kind="video"), None
        else:
            src = api.source(body.video.id if isinstance(body.video, VideoRef) else body.video, "video")
            ref, short = src["ref"], _short(src)
        req = {"video": ref, "prompt": body.prompt, "extend_s": extra, "direction": "forward", **body.settings()}
        return api.submit("extend", {**req, "resolution": short} if short else req, body.model)
    app.post("/v1/videos/extensions", response_model=Video, responses=ERRORS, tags=["videos"],
             summary="Extend a completed video forward",
             openapi_extra=_body_doc(ExtendVideo, {"video": "a clip to extend (instead of a video id)"}))(
        form_endpoint(extend_video))


def _cinepatch_routes(app: FastAPI, api: VideosApi):
    """cinepatch's own operations under /v1/cinepatch/ (before the catch-all route, which must come last)."""
    @app.post("/v1/cinepatch/storyboard", response_model=Video, responses=ERRORS, tags=["cinepatch"],
              summary="Make a video from a storyboard (text, image and video cards on a timeline)")
    def storyboard_video(body: StoryboardVideo):
        from engine.requests import map_media
        story = map_media(body.storyboard, lambda field, ref: api.ref(ref, f"storyboard.{field}"))
        return api.submit("storyboard", {"storyboard": story, **body.settings()}, body.model)

    @app.post("/v1/cinepatch/blend", response_model=Video, responses=ERRORS, tags=["cinepatch"],
              summary="Blend two completed videos through a curve (0 = a, 1 = b)")
    def blend_video(body: BlendVideo):
        a, b = api.source(body.a, "a"), api.source(body.b, "b")
        req = {"a": a["ref"], "b": b["ref"], "curve": body.curve, "repaint": body.repaint, "prompt_a": body.prompt_a,
               "prompt_b": body.prompt_b, "resolution": _short(a), **body.settings()}
        if body.seconds is not None:
            req["duration_s"] = seconds_value(body.seconds)
        return api.submit("blend", {k: v for k, v in req.items() if v is not None}, body.model)

    @app.post("/v1/cinepatch/loop", response_model=Video, responses=ERRORS, tags=["cinepatch"],
              summary="Make a completed video loop seamlessly (clip + a generated bridge)")
    def loop_video(body: LoopVideo):
        src = api.source(body.video, "video")
        req = {"video": src["ref"], "prompt": body.prompt, "bridge_s": body.bridge_s, "context_s": body.context_s,
               "resolution": _short(src), **body.settings()}
        return api.submit("loop", {k: v for k, v in req.items() if v is not None}, body.model)

    @app.get("/v1/cinepatch/memory", tags=["cinepatch"], summary="Each real model's memory setting for its next load")
    def memory_settings():
        from engine.backends.registry import REAL, configured
        return {name: {"memory": api.studio.memory(name), "pending": api.studio.memory_pending(name)}
                for name in configured() if name in REAL}

    @app.post("/v1/cinepatch/memory", tags=["cinepatch"], responses=ERRORS,
              summary="Pick a real model's memory setting (applies to its next load, as in the page)")
    def set_memory(body: MemorySetting):
        model = api.backend(body.model)
        try:
            said = api.studio.set_memory(model, body.memory)
        except InputError as e:   # the page's words name its dropdown; here the field is `memory`
            raise bad("memory:" + str(e).split(":", 1)[1]) from None
        return {"model": model, "memory": api.studio.memory(model), "pending": api.studio.memory_pending(model),
                "message": said}

    @app.get("/v1/cinepatch/limits", tags=["cinepatch"], summary="How much one request may ask of this server")
    def limits():
        return {name: {"max": lim.max, "unit": lim.unit, "description": lim.help} for name, lim in LIMITS.items()}


def _catch_all(app: FastAPI):
    """/v1 paths no route takes: a 405 naming the methods where the path exists, else a 404."""
    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    def unknown(rest: str, request: Request):
        # a known path asked with the wrong method is a 405 naming the methods it takes, as HTTP says
        allowed = sorted({m for r in app.routes if isinstance(r, APIRoute) and r.path != "/v1/{rest:path}"
                          and r.path_regex.match(request.url.path) for m in r.methods})
        if allowed:
            raise ApiError(405, f"method: /v1/{rest[:80]} takes {', '.join(allowed)}, not {request.method}",
                           "method_not_allowed", "method", {"Allow": ", ".join(allowed)})
        raise ApiError(404, f"{request.method} /v1/{rest[:80]}: no such endpoint", "unknown_url")


def _short(item: dict) -> int:
    """A library video's short side: what it is remade at."""
    return max(int(PARAMS["resolution"].min), min(int(item["width"]), int(item["height"]), int(PARAMS["resolution"].max)))


def _handlers(app: FastAPI):
    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error_response(e.status, e.message, e.code, e.param, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        message, code, field = _first_error(e.errors())
        return error_response(400, message, code, field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail), {404: "unknown_url", 405: "method_not_allowed"}.get(
            e.status_code, "http_error"))

    @app.exception_handler(Exception)
    async def crash(request, e: Exception):  # the traceback goes to the log, never to the client
        traceback.print_exception(e, file=sys.stderr)
        return error_response(500, "internal error; the server log has the details", "server_error")
