"""`python -m bench.ui`: the field app's speed as a worker feels it (issue 4), measured in a real
Chromium driving the real Flet web build on a device holding the full data set (1,000 persons,
100,000 contacts, production KDF):

- `ui.unlock_to_today`: from the tap on "unlock" to Today's "new contact" button on screen;
- `ui.search_keystroke`: from the last keystroke in the person search to the matching persons on
  screen (the results the service layer gives for that text, checked by their ids);
- `ui.save_contact`: from the tap on "save" to "saved" on screen (`ui.save_to_today`: to the
  contact counted on Today, a page change later).

Each is timed by the page's own clock, from the key or pointer event to the first frame that shows
the result (checked once a frame: a figure may hold up to one frame, ~16 ms, of the browser's pace),
so the driver's round trips are not in it. Results go to `bench/ui_results.json`
(the same shape as `bench/results.json`); the table is printed. Needs Debian's Chromium.

    python -m bench.ui [--persons N] [--contacts M] [--rounds R] [--out FILE] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .stats import Results, percentile

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PIN = "bench passphrase 2468"
CHROMIUM = os.environ.get("OUTREACH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
QUERIES = ("Demo Lange", "Bjørn", "Glade Ib", "soeren", "Store", "Pia 4", "Unge", "Demo Rø", "Karl", "Anne")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(app_dir: Path, persons: int, contacts: int) -> dict[str, list[str]]:
    """The device (production KDF) with the demo data; returns each query's expected result ids,
    as the service layer's search gives them (the same call the app makes)."""
    from models.usecases.demo import populate
    from models.workspace import Workspace

    ws = Workspace(app_dir)
    ws.init(PIN, worker_name="Bench")
    populate(ws, persons=persons, contacts=contacts)
    expected = {q: [p.id for p in ws.search(q, limit=8).persons[:8]] for q in QUERIES}
    ws.close()
    return {q: ids for q, ids in expected.items() if ids}  # a query that finds nobody measures nothing


ADDRESS = re.compile(r"Open the app in your browser: (http://\S+)")


@contextmanager
def _app(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "FLET_WEB_NO_CDN": "1", "FLET_SERVER_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DISPLAY", None)
    log = open(data_dir / "app.out", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "app.run", "--no-server", "--web", "--data-dir", str(data_dir),
                             "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    url = ""
    try:
        # the app prints its address, with the launch's key, once its socket listens; a page opened
        # without that key gets nothing (app.ui.web)
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited: {(data_dir / 'app.out').read_text(errors='replace')[-2000:]}")
            found = ADDRESS.findall((data_dir / "app.out").read_text(errors="replace"))
            url = found[-1] if found else ""
            if not url:
                time.sleep(0.1)
        if not url:
            raise RuntimeError("the app printed no address within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


# what a screen reader would find on the screen: the texts and the labels
_SCREEN_WORDS = """(() => {
    const host = document.querySelector('flt-semantics-host');
    if (!host) return '';
    const labels = [...host.querySelectorAll('[aria-label]')].map(e => e.getAttribute('aria-label'));
    return [host.innerText, ...labels].join('\\n');
})"""


def _node(ident: str) -> str:
    return f'[flt-semantics-identifier="{ident}"]'


class Tab:
    def __init__(self, page: Any) -> None:
        self.page = page

    def wait(self, js: str, arg: Any = None, timeout: float = 30.0) -> None:
        self.page.wait_for_function(js, arg=arg, polling="raf", timeout=timeout * 1000)

    def arm(self) -> None:
        """Note in the page when the next key, text input or pointer press happens (a letter such
        as "ø" arrives as text input, without a key event)."""
        self.page.evaluate("""() => { window.__t0 = null; window.__t1 = null;
            const mark = () => { if (window.__t0 === null) window.__t0 = performance.now(); };
            for (const ev of ['keydown', 'beforeinput', 'input', 'pointerdown'])
                document.addEventListener(ev, mark, {capture: true, once: true}); }""")

    def wait_since(self, js: str, arg: Any = None, timeout: float = 30.0) -> float:
        """Wait until `js(arg)` holds, checked once a frame in the page; seconds from the armed
        event to that frame, by the page's own clock (no Playwright round trips in it)."""
        self.page.wait_for_function(f"""arg => {{ if (window.__t1 === null && ({js})(arg)) window.__t1 = performance.now();
                                      return window.__t1 !== null; }}""", arg=arg, polling="raf",
                                    timeout=timeout * 1000)
        took = self.page.evaluate("() => window.__t0 === null ? null : (window.__t1 - window.__t0) / 1000")
        if took is None:
            raise RuntimeError("the page saw no input event: nothing to time from")
        return float(took)

    def present(self, ident: str, timeout: float = 30.0) -> None:
        self.wait("s => !!document.querySelector(s)", _node(ident), timeout)

    def click(self, ident: str) -> None:
        node = self.page.locator(_node(ident)).first
        inner = node.locator("[flt-tappable], [role=button], input, textarea").first
        (inner if inner.count() else node).click()

    def focus_field(self, ident: str) -> None:
        field = self.page.locator(_node(ident)).locator("input, textarea").first
        for _ in range(20):
            field.click()
            if self.page.evaluate("() => ['INPUT', 'TEXTAREA'].includes(document.activeElement?.tagName)"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{ident} does not take the keyboard")

    def text_has(self, words: str, timeout: float = 30.0) -> None:
        self.wait(f"w => ({_SCREEN_WORDS})().includes(w)", words, timeout)


def _unlock(tab: Tab) -> float:
    tab.present("lock-pin", 60)
    tab.focus_field("lock-pin")
    tab.page.keyboard.type(PIN)
    tab.arm()
    tab.click("lock-unlock")
    return tab.wait_since("s => !!document.querySelector(s)", _node("new-contact"), 60)


# the screen shows the results of this text: every person row on it is one of them, and the first
# ones (those surely on screen, even on a phone) are there
_RESULTS_ARE = """(ids) => {
    const shown = [...document.querySelectorAll('[flt-semantics-identifier^="pick-"]')]
        .map(n => n.getAttribute('flt-semantics-identifier').slice(5));
    return shown.length > 0 && shown.every(id => ids.includes(id)) && ids.slice(0, 3).every(id => shown.includes(id));
}"""


def _search(tab: Tab, query: str, expected: list[str]) -> float:
    tab.focus_field("nc-person-search")
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.press("Backspace")
    tab.page.keyboard.type(query[:-1])
    time.sleep(0.4)  # the results of the text so far are on screen
    tab.arm()
    tab.page.keyboard.type(query[-1])
    return tab.wait_since(_RESULTS_ARE, [i[:8] for i in expected])


def _today_count(tab: Tab, today_words: str) -> int:
    text = tab.page.evaluate(_SCREEN_WORDS + "()")
    found = re.search(re.escape(today_words) + r" \((\d+)\)", text)
    return int(found.group(1)) if found else 0


def _save(tab: Tab, today_words: str, saved_words: str) -> tuple[float, float, float]:
    """(a tap that only redraws: "anonymous" to the chosen chip; the tap on save to "saved" on
    screen; that tap to the contact counted on Today)"""
    tab.present("new-contact")
    tab.wait("s => !document.querySelector(s)", _node("toast"), 15)  # the last save's message has gone
    n = _today_count(tab, today_words) + 1
    tab.click("new-contact")
    tab.present("nc-anonymous")
    tab.arm()
    tab.click("nc-anonymous")
    tap = tab.wait_since("s => !!document.querySelector(s)", _node("nc-person-chosen"))
    tab.arm()
    tab.click("nc-save")
    saved = tab.wait_since("([s, w]) => (document.querySelector(s)?.innerText || '').includes(w) || "
                           "(document.querySelector(s)?.getAttribute('aria-label') || '').includes(w) || "
                           "[...(document.querySelector(s)?.querySelectorAll('[aria-label]') || [])]"
                           ".some(e => e.getAttribute('aria-label').includes(w))", [_node("toast"), saved_words])
    tab.page.evaluate("() => { window.__t1 = null; }")
    listed = tab.wait_since(f"w => ({_SCREEN_WORDS})().includes(w)", f"{today_words} ({n})")
    return tap, saved, listed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1000)
    parser.add_argument("--contacts", type=int, default=100_000)
    # 6 rounds: 30 saves and 60 searches; a p95 of 15 samples is the second slowest of them
    parser.add_argument("--rounds", type=int, default=6, help="unlocks (and rounds of searches and saves)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "ui_results.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.persons < 10 or args.contacts < 0 or args.rounds < 1:
        print("python -m bench.ui: --persons >= 10, --contacts >= 0, --rounds >= 1", file=sys.stderr)
        return 2
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        print("python -m bench.ui: Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    import json

    from playwright.sync_api import sync_playwright

    scale = {"persons": args.persons, "contacts": args.contacts}
    results = Results(scale, "ui")
    words = json.loads((REPO_ROOT / "assets" / "i18n" / "da.json").read_text(encoding="utf-8"))
    today_words, saved_words = words["today.contacts"], words["contact.saved"]
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-ui-"))
    try:
        print(f"Outreach UI benchmark: {args.persons:,} persons, {args.contacts:,} contacts", flush=True)
        expected = _seed(tmp / "app", args.persons, args.contacts)
        unlocks: list[float] = []
        searches: list[float] = []
        saves: list[float] = []
        on_today: list[float] = []
        taps: list[float] = []
        with _app(tmp) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 412, "height": 915})
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("#loading", state="detached", timeout=60_000)
            page.locator("flt-semantics-placeholder").dispatch_event("click")
            tab = Tab(page)
            for r in range(args.rounds):
                unlocks.append(_unlock(tab))
                tab.click("new-contact")
                tab.present("nc-person-search")
                for query, ids in expected.items():
                    searches.append(_search(tab, query, ids))
                tab.page.go_back()
                tab.present("new-contact")
                for _ in range(5):
                    tap, saved, listed = _save(tab, today_words, saved_words)
                    taps.append(tap)
                    saves.append(saved)
                    on_today.append(listed)
                if r < args.rounds - 1:
                    tab.click("lock-now")
            browser.close()
        tap_ms = [1000 * x for x in taps]
        results.add("ui.tap_redraw.p50", round(percentile(tap_ms, 50), 1), "ms", runs=len(tap_ms),
                    note="the floor of this UI: a tap whose handler only redraws (browser, websocket, Flet, Flutter)")
        ms = [1000 * x for x in searches]
        results.add("ui.unlock_to_today", round(max(unlocks), 3), "s", target="<= 2", runs=unlocks,
                    note="slowest of the unlocks (production KDF, sealed snapshot)")
        results.add("ui.search_keystroke.p50", round(percentile(ms, 50), 1), "ms", runs=len(ms))
        results.add("ui.search_keystroke.p95", round(percentile(ms, 95), 1), "ms", target="<= 100", runs=len(ms),
                    samples=[round(x, 1) for x in ms], queries=list(expected) * args.rounds)
        save_ms = [1000 * x for x in saves]
        results.add("ui.save_contact.p50", round(percentile(save_ms, 50), 1), "ms", runs=len(save_ms))
        results.add("ui.save_contact.p95", round(percentile(save_ms, 95), 1), "ms", target="<= 100", runs=len(save_ms),
                    samples=[round(x, 1) for x in save_ms],
                    note="tap on save to 'saved' on screen")
        listed_ms = [1000 * x for x in on_today]
        results.add("ui.save_to_today.p95", round(percentile(listed_ms, 95), 1), "ms", runs=len(listed_ms),
                    note="tap on save to the contact counted on Today (a page change)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results.write(args.out, time.perf_counter() - started)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
