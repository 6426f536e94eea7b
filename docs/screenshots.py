"""Refresh the studio screenshots in docs/ (studio-*.png), reproducibly:

    .venv/bin/python docs/screenshots.py

Starts `python -m studio` on the embedded model with a data folder and a Gradio temp folder of its own (both in a
temporary folder, removed after), makes six small videos through the page (8 steps, seed 1), and saves one
full-page screenshot per tab, 1400 px wide, with Debian's Chromium through Playwright. The studio is stopped on
exit, on error too. Takes a few minutes on a busy CPU."""
import os
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT))   # run as a file: the repo's packages (studio, engine, tests) by their names

WAIT_MS = 180_000          # one generation on a busy 2-core machine, a cold model load included
STEPS = 8                  # few steps: the pictures are of the page, not of the model's quality
SEED = 1                   # the same videos every run (each result says its seed)
MAX_BYTES = 400_000        # the repo stays small: a larger PNG is re-saved with a 256-colour palette
VIEWPORT = {"width": 1400, "height": 1000}
PROMPT = "a large red circle moving left on a white background"
HIDE = ".toast-wrap { display: none !important; }"   # a toast left over would cover part of the picture


def browser_missing() -> str | None:
    """What is missing to take screenshots, in one line, or None."""
    from tests.conftest import CHROMIUM
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (.venv/bin/pip install playwright)"
    if not os.path.exists(CHROMIUM):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


def shot(page, name: str, until: str | None = None) -> None:
    """Save docs/<name>.png of the whole page (down to the element `until` only, where given), the pointer
    out of the way (a hovered thumbnail plays)."""
    page.mouse.move(0, 0)
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")   # no focus ring or spinner
    page.wait_for_timeout(1500)                      # videos show a frame, layout settles
    path = DOCS / f"{name}.png"
    clip = None
    if until:
        bottom = page.locator(until).evaluate("e => e.getBoundingClientRect().bottom + scrollY")
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom + 12}
    page.screenshot(path=str(path), full_page=True, clip=clip)
    if path.stat().st_size > MAX_BYTES:
        from PIL import Image
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB", flush=True)


def pick_video(page, elem_id: str, vid: int) -> None:
    """Pick library video #vid in a source dropdown, by typing its number."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(f"#{vid} ")
    page.get_by_role("option").filter(has_text=f"#{vid} ").first.click()


def close_advanced(page, prefix: str) -> None:
    """Fold the Advanced section a few-steps run opened: the picture is shorter."""
    page.locator(f"#{prefix}-advanced").get_by_text("Advanced").click()


def go_and_wait(page, prefix: str, button: str, result: str) -> int:
    """Set few steps and the seed, click `button`, wait until the result plays: -> its library id."""
    from tests.test_studio_browser import set_steps
    set_steps(page, prefix, STEPS)
    page.locator(f"#{prefix}-seed input, #{prefix}-seed textarea").first.fill(str(SEED))
    page.locator(f"#{button}").click()
    vid = wait_result(page, result)
    close_advanced(page, prefix)
    return vid


def wait_result(page, result: str) -> int:
    """Wait until the result panel `result` plays its video: -> its library id."""
    from tests.test_studio_browser import caption_after, wait_video
    vid, _ = caption_after(page, result)
    wait_video(page, result, timeout=WAIT_MS)
    return vid


def create_and_remix(page) -> tuple[int, int]:
    """Create: two variations, shown finished; Remix: the first as a yellow triangle. -> (its id, the remix's)."""
    from tests.test_studio_browser import tab
    page.locator("#create-prompt textarea").fill(PROMPT)
    page.locator("#create-variations").get_by_label("2", exact=True).check()
    first = go_and_wait(page, "create", "create-generate", "create-result")
    wait_result(page, "create-result-1")
    shot(page, "studio-create")
    tab(page, "Remix")
    pick_video(page, "remix-source", first)
    page.locator("#remix-prompt textarea, #remix-prompt input").first.fill("a yellow triangle")
    remix = go_and_wait(page, "remix", "remix-go", "remix-result")
    shot(page, "studio-remix")
    return first, remix


def storyboard(page, media: int) -> None:
    """Three text cards on the strip, their plan, and library video #media picked (its chip under the strip)."""
    from tests.test_studio_browser import add_text_card, tab
    tab(page, "Storyboard")
    cards = [("a red circle moving left on black", 0, 1.5), ("a blue square staying still on black", 1.5, 3),
             ("a green triangle moving up on black", 3, 4)]
    for n, (text, a, b) in enumerate(cards, start=1):
        add_text_card(page, text, a, b, n)
    page.wait_for_function("() => document.querySelectorAll('#plan-table [role=row]').length > 3")
    pick_video(page, "card-source", media)
    page.locator("#card-chip .cp-chip").get_by_text("drag onto the timeline").wait_for()
    go_and_wait(page, "sb", "sb-generate", "sb-result")
    shot(page, "studio-storyboard")


def blend(page, a: int, b: int) -> None:
    """Two library videos, the curve editor (the transition preset) and their blend."""
    from tests.test_studio_browser import tab
    tab(page, "Blend")
    pick_video(page, "blend-a-source", a)
    pick_video(page, "blend-b-source", b)
    page.get_by_label("Prompt A (optional)").fill("a red circle")
    page.get_by_label("Prompt B (optional)").fill("a yellow triangle")
    page.locator("#blend-curve .cp-point").first.wait_for()
    go_and_wait(page, "blend", "blend-go", "blend-result")
    shot(page, "studio-blend", until="#blend-go")   # its result, full width below, would double the picture


def cut_on_film(page, tab_name: str, prefix: str, vid: int, start: float, end: float) -> None:
    """On Loop or Re-cut: #vid's filmstrip, its in and out handles moved in by typed times."""
    from tests.test_studio_browser import tab, type_number
    tab(page, tab_name)
    pick_video(page, f"{prefix}-source", vid)
    page.locator(f"#{prefix}-film .cp-film-frames img").first.wait_for()
    type_number(page, f"{prefix}-start", start)
    type_number(page, f"{prefix}-end", end)
    page.wait_for_function("p => parseFloat(document.querySelector('#' + p + '-film .cp-film-in').style.left) > 1",
                           arg=prefix)


def loop(page, vid: int) -> None:
    """Loop a middle section of #vid: the filmstrip with its in and out handles moved in, and the loop made."""
    cut_on_film(page, "Loop", "loop", vid, 0.5, 1.5)
    go_and_wait(page, "loop", "loop-go", "loop-result")
    shot(page, "studio-loop")


def recut(page, vid: int) -> None:
    """Re-cut #vid: its filmstrip trimmed by typed times, nothing applied (a re-cut job has no preview picture:
    the job list would show an empty image for it)."""
    cut_on_film(page, "Re-cut", "recut", vid, 0.25, 1.5)
    shot(page, "studio-recut")


def library(page, vid: int) -> None:
    """The gallery with #vid selected: its info and lineage."""
    from tests.test_studio_browser import tab
    tab(page, "Library")
    page.locator("#lib-refresh").click()
    thumbs = page.locator("#lib-gallery button[aria-label^='Thumbnail']")
    # by the caption's start: "#4 loop of #2" has "#2 " in it too
    find = "n => Array.from(document.querySelectorAll(\"#lib-gallery button[aria-label^='Thumbnail']\"))" \
           ".findIndex(b => b.innerText.trim().startsWith('#' + n + ' '))"
    page.wait_for_function(f"n => ({find})(n) >= 0", arg=vid)
    thumbs.nth(page.evaluate(find, vid)).click()
    page.locator("#lib-info").get_by_text(f"#{vid} ").first.wait_for()
    page.locator("#lib-info").get_by_text("lineage").wait_for()
    shot(page, "studio-library")


def shoot_all(browser, url: str) -> None:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.locator("#create-prompt textarea").wait_for()
    page.add_style_tag(content=HIDE)
    first, remix = create_and_remix(page)
    storyboard(page, remix)
    blend(page, first, remix)
    loop(page, remix)
    recut(page, first)
    library(page, remix)
    ctx.close()


def stop_on_term(*_):
    raise SystemExit("screenshots.py: stopped by a signal")   # so the finally below stops the studio


def main() -> int:
    missing = browser_missing()
    if missing:
        print(f"screenshots.py: {missing}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS, StudioServer
    signal.signal(signal.SIGTERM, stop_on_term)
    with tempfile.TemporaryDirectory(prefix="cinepatch-shots-") as tmp:
        gradio_tmp = Path(tmp) / "gradio"
        gradio_tmp.mkdir()
        server = StudioServer(Path(tmp) / "home", env={"GRADIO_TEMP_DIR": str(gradio_tmp)})
        try:
            server.start()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    shoot_all(browser, server.url)
                finally:
                    browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
