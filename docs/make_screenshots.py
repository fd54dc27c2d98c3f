"""Regenerate the documentation screenshots from real xreid output.

    python docs/make_screenshots.py [--data-root DIR] [--chromium PATH]

Runs ``xreid explain`` on the first VIPeR query of PETA-ReID (its true match ranks first, impostors
follow), then photographs the HTML report with headless Chromium:

- ``docs/report.png``: the top of the report as an analyst first sees it (query card, the true
  match, the first impostors);
- ``docs/report_details.png``: the same report with the first impostor's details folded open
  (every attribute's numbers, the distance composition, the per-dimension maps).

Then indexes VIPeR (``xreid index build``), serves it (``xreid serve``) and photographs the search
page driven by Playwright: ``docs/search.png`` (a query dropped, filtered to men, results with
their probabilities, chips and bars, one marked as the person) and ``docs/search_explanation.png``
(a result's explanation opened beside the results).

With ``--footage VIDEO`` (PETS09-S2L1 from the shared data), also builds a case from the first
``--footage-frames`` frames of the video (``xreid index build --video`` on a folder of those frames,
kept only in the temporary folder), serves it, searches by its longest sighting and photographs
``docs/footage_search.png`` (the timeline of the results above the threshold, the best result's
sighting panel with key frame and crop strip, the first results). ``docs/footage_timeline.png``, the
whole video's timeline for printing, is not made here: ``xreid index timeline CASE --out
docs/footage_timeline.png`` on a case of the whole video. ``--only-footage`` skips the PETA pictures. Screenshots over 400 KB are stored with a 256-colour palette.

Each picture is written to a temporary file first and moved into place, so a failed run never
leaves a half-written image. Needs the PETA data prepared in the data root (``xreid data prepare
peta ...``) and Chromium (``install.sh`` installs Debian's ``chromium`` package). About a minute on
two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
WINDOW = "1400,1250"


def xreid_command() -> list[str]:
    """The ``xreid`` entry point of this environment (falls back to ``python -m xreid.cli``)."""
    exe = shutil.which("xreid")
    return [exe] if exe else [sys.executable, "-m", "xreid.cli"]


def find_chromium(explicit: str | None) -> str:
    candidates = [explicit] if explicit else ["/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"]
    for c in candidates:
        path = shutil.which(c) if c else None
        if path:
            return path
    sys.exit("error: Chromium not found (install it with `apt-get install chromium`, or run ./install.sh; "
             "or pass --chromium PATH)")


def make_report(work: Path, data_root: str | None) -> Path:
    html = work / "report.html"
    cmd = xreid_command() + ["explain", "--protocol", "peta-reid", "--test-set", "VIPeR", "--query-index", "0",
                             "--out", str(html), "--json", str(work / "report.json")]
    if data_root:
        cmd += ["--data-root", data_root]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    if not html.is_file():
        sys.exit(f"error: xreid explain wrote no report at {html}")
    return html


def with_details_open(html: Path, result_rank: int) -> Path:
    """A copy of the report whose ``result_rank``-th result card has its details open, and the
    cards before it left out, so the open details fit the picture."""
    page = html.read_text()
    cards = page.split('<div class="card ')
    head, query, results = cards[0], cards[1], cards[2:]
    chosen = results[result_rank - 1].replace("<details>", "<details open>", 1)
    copy = html.with_name(f"details_{result_rank}.html")
    copy.write_text('<div class="card '.join([head, query, chosen]) + "</body></html>")
    return copy


def first_impostor(report_json: Path) -> int:
    import json

    results = json.loads(report_json.read_text())["results"]
    return next((r["rank"] for r in results if r["is_match"] is False), 1)


def screenshot(chromium: str, html: Path, target: Path, work: Path, window: str = WINDOW) -> None:
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=work))
    fd, partial = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".png", dir=target.parent)
    os.close(fd)
    os.unlink(partial)  # Chromium creates the file itself; an empty one would hide a failed run
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={window}",
           f"--screenshot={partial}", html.resolve().as_uri()]
    print("$", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, timeout=180, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not os.path.isfile(partial) or os.path.getsize(partial) == 0:
            sys.exit("error: Chromium exited without writing a screenshot")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    print(f"wrote {target}")


def search_page(chromium: str, work: Path, data_root: str | None) -> None:
    """Index VIPeR, serve it, and photograph the search page as an analyst uses it."""
    import glob

    from playwright.sync_api import expect, sync_playwright

    from xreid.paths import resolve_data_root

    root = resolve_data_root(data_root)
    case = work / "viper_case"
    extra = ["--data-root", str(root)]
    subprocess.run(xreid_command() + ["index", "build", "--images", str(root / "peta" / "PETA dataset" / "VIPeR"),
                                      "--out", str(case), *extra], check=True)
    server, url = serve(case, extra)
    try:
        query = sorted(glob.glob(str(root / "peta" / "PETA dataset" / "VIPeR" / "archive" / "*")))[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#attributes select")
            page.select_option("select[data-name='personalMale']", "yes")
            page.set_input_files("#file", query)
            page.wait_for_selector(".result")
            page.locator(".result button.mark.match").nth(1).click()
            expect(page.locator(".result.match")).to_have_count(1)
            _shot(page, DOCS / "search.png")
            page.locator(".result .why").nth(1).click()
            page.frame_locator("#detail-frame").locator("text=Why these results?").wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            _shot(page, DOCS / "search_explanation.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


def serve(case: Path, extra: list[str]):
    """``xreid serve case`` on a free port of 127.0.0.1, once it answers: (process, url)."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(xreid_command() + ["serve", str(case), "--port", str(port), *extra])
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "api/info", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    return server, url


def footage_pages(chromium: str, work: Path, video: Path, frames: int, detector: str) -> None:
    """A case from the first ``frames`` frames of ``video``, served and photographed: the results of a
    search by its longest sighting, their timeline, the best result's key frame and crops."""
    import json
    import urllib.request

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from xreid.data.video import list_footage, read_frames

    cut = work / "frames"
    cut.mkdir()
    footage = list_footage(video)[0]
    for n, frame in read_frames(footage):
        if n > frames:
            break
        if frame is not None:
            Image.fromarray(frame).save(cut / f"{n:06d}.jpg", quality=92)
    case = work / "footage_case"
    subprocess.run(xreid_command() + ["index", "build", "--video", str(cut), "--fps", f"{footage.fps:g}",
                                      "--camera", "view1", "--start", "2009-03-01T10:00:00", "--detector", detector,
                                      "--out", str(case)], check=True)
    server, url = serve(case, [])
    try:
        items = json.load(urllib.request.urlopen(url + "api/timeline", timeout=30))["items"]
        longest = max(items, key=lambda i: i["end"] - i["start"])["id"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(url)
            page.wait_for_selector("#attributes select")
            page.evaluate(f"runSearch(false, [{longest}])")  # as the sighting panel's "Search for this person"
            page.wait_for_selector(".result")
            page.locator("#timeline:not([hidden]) svg").wait_for(timeout=60_000)
            page.locator(".result button.frames").first.click()  # the best result (the query itself is left out)
            page.locator("#sighting-crops img").first.wait_for()
            page.wait_for_function("[...document.images].every((i) => i.complete)")
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            _shot(page, DOCS / "footage_search.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


def _shot(page, target: Path, limit: int = 400_000) -> None:
    """A screenshot of ``page`` to ``target``, atomically; over ``limit`` bytes it is
    stored with a 256-colour palette."""
    fd, partial = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".png", dir=target.parent)
    os.close(fd)
    try:
        page.screenshot(path=partial)
        if os.path.getsize(partial) > limit:
            from PIL import Image

            with Image.open(partial) as im:
                small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
            small.save(partial, optimize=True)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    print(f"wrote {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None, help="passed to xreid (default: $XREID_DATA_ROOT, else ~/.cache/xreid)")
    ap.add_argument("--chromium", default=None, help="Chromium executable (default: /usr/bin/chromium or on PATH)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the report and its JSON")
    ap.add_argument("--footage", type=Path, default=None,
                    help="a video (PETS09-S2L1) for docs/footage_search.png and docs/footage_timeline.png")
    ap.add_argument("--footage-frames", type=int, default=200, help="frames of --footage to index (from the first)")
    ap.add_argument("--detector", default="person-detection-retail-0013", help="--footage: the person detector")
    ap.add_argument("--only-footage", action="store_true", help="only the footage pictures")
    args = ap.parse_args()
    if args.only_footage and args.footage is None:
        sys.exit("error: --only-footage needs --footage VIDEO")
    if args.footage is not None and not args.footage.is_file():
        sys.exit(f"error: {args.footage}: video not found")

    chromium = find_chromium(args.chromium)
    work = Path(tempfile.mkdtemp(prefix="xreid-screenshots-"))
    try:
        if not args.only_footage:
            html = make_report(work, args.data_root)
            screenshot(chromium, html, DOCS / "report.png", work)
            details = with_details_open(html, first_impostor(work / "report.json"))
            screenshot(chromium, details, DOCS / "report_details.png", work, window="1400,1900")
            search_page(chromium, work, args.data_root)
        if args.footage is not None:
            footage_pages(chromium, work, args.footage, args.footage_frames, args.detector)
    finally:
        if args.keep:
            print(f"report kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
