"""Every named endpoint of the page, with every file-typed input given a server path (issue 19, finding 1).

Gradio checks the paths inside a request's FileData only once its Blocks count as launched;
mounted into our app they did not, so any readable file was copied into tmp/ and served.
Here each endpoint is called with each file input pointing at a secret outside the data
folder, at the library database and at a file of the data folder: none may be copied,
echoed or served.
"""
import json

import httpx
import pytest

FILE_TYPES = {"file", "uploadbutton", "video", "image", "gallery", "audio", "model3d", "simpleimage", "imageeditor"}
SECRET = "top-secret-7f3a"


@pytest.fixture(scope="module")
def served(studio):
    outside = studio.home.parent / "outside-secret.txt"
    outside.write_text(SECRET)
    inside = studio.home / "inside-secret.txt"
    inside.write_text(SECRET)
    cfg = httpx.get(studio.url + "/config", timeout=30).json()
    return studio, cfg, [str(outside), str(inside), str(studio.home / "library.sqlite"), "inside-secret.txt",
                         "../outside-secret.txt"]


def _endpoints(cfg) -> list[tuple[str, list[dict]]]:
    comps = {c["id"]: c for c in cfg["components"]}
    return [(d["api_name"], [comps[i] for i in d["inputs"]]) for d in cfg["dependencies"]
            if d.get("api_name") and d.get("api_visibility") != "private"]


def _call(studio, api_name: str, data: list) -> str:
    """POST the call and read its event stream to the end -> the stream's text ('' if refused at once)."""
    r = httpx.post(f"{studio.url}/gradio_api/call/{api_name}", json={"data": data}, timeout=30)
    if r.status_code != 200:
        assert r.status_code in (400, 403, 404, 422), (api_name, r.status_code, r.text[:200])
        return r.text
    return httpx.get(f"{studio.url}/gradio_api/call/{api_name}/{r.json()['event_id']}", timeout=120).text


def _leaked_copies(home) -> list[str]:
    """Files of the data folder other than the planted one whose bytes hold the secret."""
    return [str(p) for p in home.rglob("*") if p.is_file() and p.name != "inside-secret.txt"
            and p.stat().st_size < 2**20 and SECRET.encode() in p.read_bytes()]


def test_every_file_input_of_every_endpoint_refuses_server_paths(served):
    studio, cfg, paths = served
    endpoints = [(name, comps) for name, comps in _endpoints(cfg) if any(c["type"] in FILE_TYPES for c in comps)]
    assert len(endpoints) >= 10, [n for n, _ in endpoints]   # the page has many: the probe must see them all
    tried = 0
    for name, comps in endpoints:
        for k, comp in enumerate(comps):
            if comp["type"] not in FILE_TYPES:
                continue
            for path in paths:
                data = [c["props"].get("value") if c["type"] not in ("state",) else None for c in comps]
                fd = {"path": path, "meta": {"_type": "gradio.FileData"}}
                data[k] = [fd] if comp["props"].get("file_count") == "multiple" else fd
                stream = _call(studio, name, data)
                tried += 1
                assert SECRET not in stream, (name, path, stream[:300])
                assert "/tmp/" not in stream and str(studio.home) not in stream, (name, path, stream[:300])
                assert _leaked_copies(studio.home) == [], (name, path)
    assert tried >= 5 * len(endpoints)


def test_a_copy_is_never_served_even_if_one_existed_before(served):
    """A path to the upload folder's own copies is the one thing a FileData may name; a secret never gets there."""
    studio, _, _ = served
    for p in ("tmp/../library.sqlite", str(studio.home / "library.sqlite"), str(studio.home / "inside-secret.txt")):
        r = httpx.get(studio.url + "/gradio_api/file=" + p, timeout=30)
        assert r.status_code in (403, 404) and SECRET.encode() not in r.content, (p, r.status_code)


def test_a_real_upload_still_works(served, make_video):
    """The control: a file uploaded through /gradio_api/upload is accepted by the page's upload endpoint."""
    studio, _, _ = served
    with open(make_video("ok.mp4"), "rb") as f:
        r = httpx.post(studio.url + "/gradio_api/upload", files={"files": ("ok.mp4", f, "video/mp4")}, timeout=60)
    assert r.status_code == 200
    stream = _call(studio, "upload", [[{"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}]])
    assert "event: complete" in stream and "upload:" in stream, stream[:400]
    assert json.loads(stream.split("data: ", 1)[1].splitlines()[0])
