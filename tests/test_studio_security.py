"""What the local server must not leak (../shared/SECURITY.md), probed over HTTP against a real studio."""
import json
import os

import httpx
import pytest

from tests.conftest import ramp_clip


@pytest.fixture(scope="module")
def served(studio):
    """The studio with one library video, a secret beside the data folder and a symlink pointing out."""
    from studio.library import Library
    secret = studio.home.parent / "secret.txt"
    secret.write_text("top secret")
    (studio.home / "secret-in-home.txt").write_text("also secret")
    lib = Library(studio.home)
    vid = lib.add_video(None, "generate", "x", ramp_clip(6), 12.0,
                        {"storyboard": {}, "settings": {}, "backend": "toy", "seed": 0}, {})
    os.symlink(secret, studio.home / "videos" / "link.mp4")
    return studio, lib.video(vid), secret


def get(url, **kw):
    return httpx.get(url, follow_redirects=False, timeout=30, **kw)


def refused(r) -> bool:
    return r.status_code in (400, 403, 404, 405) and b"top secret" not in r.content and b"also secret" not in r.content


def test_files_outside_the_served_folders_are_refused(served):
    studio, video, secret = served
    base = studio.url + "/gradio_api/file="
    control = get(base + video["path"])
    assert control.status_code == 200 and control.content[4:8] == b"ftyp"   # a library video is served
    probes = ["/etc/passwd", str(secret), f"{studio.home}/videos/../../secret.txt",
              f"{studio.home}/videos/%2e%2e/%2e%2e/secret.txt", f"{studio.home}/videos/%252e%252e/%252e%252e/secret.txt",
              "secret-in-home.txt", f"{studio.home}/secret-in-home.txt", f"{studio.home}/library.sqlite",
              "library.sqlite", f"{studio.home}/videos/link.mp4"]
    for p in probes:
        r = get(base + p)
        assert refused(r), (p, r.status_code, r.content[:80])


def test_no_fetch_or_redirect_for_urls(served):
    studio, _, _ = served
    r = get(studio.url + "/gradio_api/file=http://169.254.169.254/latest/meta-data/")
    assert r.status_code not in (301, 302, 303, 307, 308) and r.status_code >= 400


def test_api_endpoints_refuse_file_data_outside_the_data_folder(served):
    studio, _, secret = served
    for op in ("remix", "loop", "recut", "generate"):
        field = {"generate": "image"}.get(op, "video")
        body = {"data": [{field: "file:0"}, [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}]]}
        r = httpx.post(f"{studio.url}/gradio_api/call/{op}", json=body, timeout=30)
        if r.status_code == 200:
            event = r.json()["event_id"]
            stream = httpx.get(f"{studio.url}/gradio_api/call/{op}/{event}", timeout=60).text
            assert "event: complete" not in stream, (op, stream[:300])
            assert "top secret" not in stream
        else:
            assert r.status_code in (400, 403, 422)
    # and a request string is never a path
    body = {"data": [{"video": str(secret)}, []]}
    event = httpx.post(f"{studio.url}/gradio_api/call/remix", json=body, timeout=30).json()["event_id"]
    stream = httpx.get(f"{studio.url}/gradio_api/call/remix/{event}", timeout=60).text
    assert "event: error" in stream and "event: complete" not in stream


def test_upload_cap_and_non_media(served):
    studio, _, _ = served
    big = b"\0" * (studio.max_upload_mb * 2**20 + 1024)
    r = httpx.post(studio.url + "/gradio_api/upload", files={"files": ("big.mp4", big, "video/mp4")}, timeout=60)
    assert r.status_code == 413
    r = httpx.post(studio.url + "/gradio_api/upload", files={"files": ("notes.mp4", b"not a video", "video/mp4")},
                   timeout=30)
    assert r.status_code == 200
    path = r.json()[0]
    event = httpx.post(f"{studio.url}/gradio_api/call/upload",
                       json={"data": [[{"path": path, "meta": {"_type": "gradio.FileData"}}]]}, timeout=30).json()
    stream = httpx.get(f"{studio.url}/gradio_api/call/upload/{event['event_id']}", timeout=60).text
    assert "event: error" in stream and "files[0]" in stream and "Traceback" not in stream


def test_cross_origin_requests_get_no_cors_grant(served):
    studio, video, _ = served
    for origin in ("https://evil.example", "null"):
        for url in (studio.url + "/config", studio.url + "/gradio_api/file=" + video["path"]):
            r = get(url, headers={"Origin": origin, "Cookie": "session=1"})
            assert "access-control-allow-origin" not in {k.lower() for k in r.headers}, (origin, url, r.headers)


def test_binds_loopback_only(served):
    import socket
    studio, _, _ = served
    addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, studio.port)) != 0, f"the studio answers on {addr}"


def test_page_config_has_no_share_link_and_no_analytics(served):
    studio, _, _ = served
    cfg = httpx.get(studio.url + "/config", timeout=30).json()
    assert not cfg.get("share_url") and cfg.get("is_space") is not True
    assert str(studio.home.parent / "secret.txt") not in json.dumps(cfg)
