"""Helpers of the browser tests (a helper module, not a test file): the app as a web-mode
subprocess, a headless Chromium (Debian's, never a downloaded one) and a small driver that speaks
in the app's identifiers and translations.

    from uihelpers import AppProcess, UI, browser, seed_workspace   # `browser` is a fixture

    with AppProcess(tmp_path / "dev", server_url=server.url) as app:   # free port, fast KDF
        ui = UI(browser, app.url, size=PHONE)       # the printed address (with its key): waits for Flutter
        ui.fill("setup-pin", "246810"); ui.click("setup-join")
        ui.expect("new-contact"); ui.text("sync-chip"); ui.shot("today-phone")

Run as a script, this module is the test launcher: it starts the app like `python -m app.run
--no-server --web` but with the weak KDF of tests (`AppConfig(fast_kdf=True)`), which nothing
outside the tests can switch on. Like `make run` it answers only the address it prints, which
carries a key made for this launch: `AppProcess.url` is that address, read from the app's output.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
BLANK_PNG_BYTES = 10_000  # a screenshot smaller than this shows an empty page (see `UI.shot`)
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"  # what a failing browser test saw (git-ignored)
CHROMIUM = os.environ.get("OUTREACH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage",
                 # several app tabs at once: none of them may be throttled as a "background" tab
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                 "--disable-backgrounding-occluded-windows"]
PHONE = (412, 915)
LAPTOP = (1280, 800)
PIN = "246810"

__all__ = ["AppProcess", "UI", "browser", "seed_workspace", "seed_member", "free_port", "printed_address", "T",
           "PHONE", "LAPTOP", "PIN", "SCREENSHOTS"]

ADDRESS_LINE = re.compile(r"Open the app in your browser: (http://\S+)")


def printed_address(output: str) -> str | None:
    """The address (with its key) the app printed last in `output`, if it printed one."""
    found = ADDRESS_LINE.findall(output)
    return found[-1] if found else None


def opens(url: str, timeout: float = 2.0) -> bool:
    """The gate answers the printed address with its cookie and a redirect (303)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        return conn.getresponse().status == 303
    except OSError:
        return False
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def T(key: str, lang: str = "da", **params: Any) -> str:
    """The words the app shows for `key` (Danish unless told)."""
    catalog = json.loads((REPO_ROOT / "assets" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    text = catalog[key]
    return text.format(**params) if params else text


# ================================================================================ the app process
class AppProcess:
    """The app in Flet web mode on a free loopback port, data in `data_dir`."""

    def __init__(self, data_dir: Path, *, server_url: str | None = None, join_code: str | None = None,
                 port: int | None = None, debounce: float = 1.0, startup_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir)
        self.server_url = server_url
        self.join_code = join_code
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        self.url = ""  # the printed address, with this launch's key (set by `start`)
        self.debounce = debounce
        self.startup_timeout = startup_timeout
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-app.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> AppProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.update({"FLET_WEB_NO_CDN": "1", "PYTHONUNBUFFERED": "1"})
        env.pop("FLET_SERVER_IP", None)
        args = [sys.executable, str(Path(__file__).resolve()), "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--debounce", str(self.debounce)]
        if self.server_url:
            args += ["--server-url", self.server_url]
        if self.join_code:
            args += ["--join-code", self.join_code]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart appends
        with open(self.log_path, "ab") as out:
            self._process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the app exited with {self._process.returncode}:\n{self.tail()}")
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                url = printed_address(fh.read().decode(errors="replace"))
            if url and opens(url):
                assert url.startswith(self.base), (url, self.base)
                self.url = url
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the app did not answer on {self.base}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def seed_workspace(data_dir: Path, *, pin: str = PIN, demo: tuple[int, int] | None = None,
                   delay_base: float = 1.0, worker_name: str = "Kim", today: int = 0) -> None:
    """A device that already has its PIN (fast KDF) before the app starts, not in a team:
    optionally with demo data and `today` contacts of today (with follow-ups due)."""
    from datetime import date, datetime, timedelta

    from models.usecases.demo import populate
    from models.workspace import Workspace

    ws = Workspace(data_dir, fast_kdf=True)
    ws.init(pin, worker_name=worker_name, delay_base=delay_base)
    if demo:
        populate(ws, persons=demo[0], contacts=demo[1])
    if today:
        persons = ws.persons()[:today] or [ws.add_person({"alias": "Demo Lange Peter"})]
        places = ws.places() or [ws.add_place({"name": "Nørreport St.", "zone": "City"})]
        now = datetime.now().replace(second=0, microsecond=0)
        for i in range(today):
            at = max(now - timedelta(minutes=35 * (i + 1)), now.replace(hour=0, minute=5))
            ws.add_contact({"at": at.isoformat(), "person_id": persons[i % len(persons)].id,
                            "place_id": places[i % len(places)].id, "kind": "street",
                            "services": ["food", "drink"] if i % 2 else ["sleeping_bag"],
                            "note": "Demo: talte om bolig og næste møde.",
                            "follow_up": date.today().isoformat() if i == 0 else None})
        ws.add_follow_up({"due": (date.today() - timedelta(days=2)).isoformat(), "person_id": persons[-1].id,
                          "note": "Demo: ring til herberget"})
    ws.close()


def seed_member(data_dir: Path, server_url: str, code: str, *, pin: str = PIN, worker_name: str = "Kim",
                demo: tuple[int, int] | None = None) -> str:
    """A device that joined a team (with the operator's code it is the coordinator; with an
    invite it waits until the coordinator syncs) before the app starts: fast KDF, optional demo
    data (queued to sync). Returns the device id."""
    from models.usecases.demo import populate
    from models.workspace import Workspace
    from sync.engine import SyncEngine

    ws = Workspace(data_dir, fast_kdf=True)
    ws.init(pin, worker_name=worker_name)
    engine = SyncEngine(ws)
    engine.join(server_url, code, device_name=worker_name)
    if demo:
        populate(ws, persons=demo[0], contacts=demo[1])
    device_id = ws.device_id
    engine.close()
    ws.close()
    return device_id


# ================================================================================== the browser
_SHARED: dict[str, Any] = {}  # one Chromium for the whole run, whichever test module asked first


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright. Skips when it is not installed: Playwright
    must never download a browser here. Each test module that imports this fixture gets its own
    copy of it; they share one browser (Playwright's sync API allows one at a time)."""
    if "browser" in _SHARED:
        yield _SHARED["browser"]
        return
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        if os.environ.get("CI_REQUIRE_SERVICES"):  # CI installs it: missing there is a failure, not a skip
            pytest.fail("Chromium is not installed, but CI requires the browser tests to run")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        _SHARED["browser"] = chromium
        try:
            yield chromium
        finally:
            _SHARED.pop("browser", None)
            chromium.close()


class UI:
    """One browser tab (its own context, so its own Flet session) on the app. `url` is the address
    the app printed, with its key: the first page load trades the key for a cookie."""

    def __init__(self, browser: Any, url: str, *, size: tuple[int, int] = PHONE, timeout: float = 20.0) -> None:
        self.context = browser.new_context(viewport={"width": size[0], "height": size[1]})
        self.page = self.context.new_page()
        self.page.set_default_timeout(timeout * 1000)
        throttle = float(os.environ.get("OUTREACH_TEST_CPU_THROTTLE") or 0)
        if throttle > 1:  # e.g. 4: a slow phone, or a loaded machine, to bring out a wait that only flakes there
            self.context.new_cdp_session(self.page).send("Emulation.setCPUThrottlingRate", {"rate": throttle})
        parts = urllib.parse.urlsplit(url)
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
        self.query = parts.query
        self.open()

    def open(self, path: str = "") -> None:
        """Load the app at `path` (the key goes along: the app answers with the page, without it)."""
        self.page.goto(self.url + path.lstrip("/") + (f"?{self.query}" if self.query else ""))
        self.page.wait_for_selector("#loading", state="detached", timeout=60_000)
        self.page.locator("flt-semantics-placeholder").dispatch_event("click")  # turn on the a11y tree
        self.page.wait_for_selector("flt-semantics", state="attached")

    def close(self) -> None:
        self.context.close()

    def resize(self, size: tuple[int, int]) -> None:
        self.page.set_viewport_size({"width": size[0], "height": size[1]})

    # ------------------------------------------------------------------ finding
    def node(self, identifier: str) -> Any:
        return self.page.locator(f'[flt-semantics-identifier="{identifier}"]').first

    def expect(self, identifier: str, timeout: float | None = None) -> Any:
        node = self.node(identifier)
        try:
            node.wait_for(state="attached", timeout=None if timeout is None else timeout * 1000)
        except Exception:
            self.dump(f"no-{identifier}")
            raise
        return node

    def dump(self, name: str) -> None:
        """A screenshot and the page's DOM next to the screenshots, to see what went wrong."""
        out = ARTIFACTS
        out.mkdir(parents=True, exist_ok=True)
        try:
            self.page.screenshot(path=str(out / f"{name}.png"))
            (out / f"{name}.html").write_text(self.page.content())
        except Exception as exc:  # the page itself may be gone; the original error matters more
            print(f"(no dump of {name}: {type(exc).__name__})")

    def gone(self, identifier: str, timeout: float | None = None) -> None:
        self.node(identifier).wait_for(state="detached", timeout=None if timeout is None else timeout * 1000)

    def has(self, identifier: str) -> bool:
        return self.page.locator(f'[flt-semantics-identifier="{identifier}"]').count() > 0

    def text_now(self, identifier: str) -> str:
        """`text`, without waiting for the node to appear (it must be there now)."""
        return self._read(self.node(identifier), timeout_ms=2000)

    def text(self, identifier: str) -> str:
        """Everything a screen reader would hear in that node: its text and every label inside."""
        return self._read(self.expect(identifier))

    def _read(self, node: Any, timeout_ms: float | None = None) -> str:
        return str(node.evaluate("""n => {
            const parts = [n.innerText || ''];
            for (const e of [n, ...n.querySelectorAll('*')]) {
                for (const a of ['aria-label', 'aria-description']) {
                    const v = e.getAttribute(a); if (v) parts.push(v);
                }
                if ((e.tagName === 'TEXTAREA' || e.tagName === 'INPUT') && e.value) parts.push(e.value);
            }
            return parts.join(' ').replace(/\\s+/g, ' ').trim();
        }""", timeout=timeout_ms))

    def all_text(self) -> str:
        return str(self.page.locator("flt-semantics-host").inner_text())

    def wait_text(self, words: str, timeout: float = 20.0) -> None:
        """Wait until `words` are somewhere on the screen (text or a label)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if words in self.all_text() or self.page.get_by_label(words, exact=False).count():
                return
            time.sleep(0.2)
        self.dump("wait-text")
        raise AssertionError(f"{words!r} did not appear; the screen says:\n{self.all_text()[:3000]}")

    def wait_id_text(self, identifier: str, words: str, timeout: float = 30.0) -> str:
        from playwright.sync_api import Error as PlaywrightError

        self.page.bring_to_front()  # two apps share one browser: a background tab is throttled
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            if self.has(identifier):
                try:
                    seen = self.text_now(identifier)
                except PlaywrightError:  # re-rendered between has() and the read: look again
                    seen = ""
                if words in seen:
                    return seen
            time.sleep(0.2)
        raise AssertionError(f"{identifier} never said {words!r}; last: {seen!r}")

    # ------------------------------------------------------------------ acting
    def click(self, identifier: str) -> None:
        node = self.expect(identifier)
        inner = node.locator("[flt-tappable], [role=button], [role=checkbox], input").first
        target = inner if inner.count() else node
        target.click()

    def tap_label(self, words: str, role: str | None = None) -> None:
        loc = self.page.get_by_role(role, name=words) if role else self.page.get_by_text(words, exact=True)
        loc.first.click()

    def nav(self, key: str, lang: str = "da") -> None:
        """A destination of the bottom bar or the rail."""
        words = T(key, lang)
        tab = self.page.get_by_role("tab", name=words)  # the bottom bar
        if tab.count():
            tab.first.click()
        else:  # the rail: buttons named "Personer / Tab 2 of 4"
            self.page.get_by_role("button", name=re.compile("^" + re.escape(words) + r"\b")).first.click()

    def focus(self, identifier: str, timeout: float = 10.0) -> None:
        """Click a field until it has the keyboard: a field that was disabled a moment ago may
        not take it yet."""
        field = self.expect(identifier).locator("input, textarea").first
        deadline = time.monotonic() + timeout
        while True:
            enabled = field.count() > 0 and field.get_attribute("disabled") is None \
                and field.get_attribute("aria-disabled") != "true"
            if enabled:
                field.click()
                if self.page.evaluate("() => ['INPUT', 'TEXTAREA'].includes(document.activeElement?.tagName)"):
                    return
            if time.monotonic() > deadline:
                self.dump(f"focus-{identifier}")
                raise AssertionError(f"{identifier} does not take the keyboard")
            time.sleep(0.2)

    def value(self, identifier: str) -> str:
        """What a text field holds (Flutter puts it in the DOM only while the field has focus)."""
        self.focus(identifier)
        time.sleep(0.2)
        return str(self.page.evaluate("() => document.activeElement.value"))

    def fill(self, identifier: str, value: str, *, tries: int = 4) -> None:
        """Replace a field's text. A focused Flutter field edits in a hidden input of its own (the
        semantics input turns read-only), so: focus, select all, type; then check what the field
        holds, and start again if the keys went elsewhere (an autofocus can steal them)."""
        for _ in range(tries):
            self.focus(identifier)
            self.page.keyboard.press("Control+A")
            if value:
                self.page.keyboard.type(value)
            else:
                self.page.keyboard.press("Backspace")
            time.sleep(0.1)
            if self.page.evaluate("() => document.activeElement?.value ?? null") == value:
                return
            time.sleep(0.3)
        self.dump(f"fill-{identifier}")
        raise AssertionError(f"could not type into {identifier}")

    def type(self, identifier: str, value: str) -> None:
        """Type key by key (search as you type)."""
        self.focus(identifier)
        self.page.keyboard.type(value, delay=30)
        time.sleep(0.1)
        held = self.page.evaluate("() => document.activeElement?.value ?? null")
        if held is not None and not str(held).endswith(value):
            self.fill(identifier, value)  # the keys went elsewhere: set the whole text

    def scroll_to(self, identifier: str, *, step: int = 400, tries: int = 15) -> Any:
        for _ in range(tries):
            if self.has(identifier):
                node = self.node(identifier)
                box = node.bounding_box()
                viewport = self.page.viewport_size
                if box and viewport and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"] - 90:
                    return node
            self.page.mouse.move(self.page.viewport_size["width"] / 2, self.page.viewport_size["height"] / 2)
            self.page.mouse.wheel(0, step)
            time.sleep(0.3)
        return self.expect(identifier)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        time.sleep(0.6)  # let animations settle
        png = self.page.screenshot()
        deadline = time.monotonic() + 20
        # On a loaded machine the semantics tree (which `expect` waits for) can be there a moment
        # before the canvas shows the frame (the fonts still loading): an empty page compresses
        # to a few KB, a drawn screen to 30 KB and more. Shoot again until it is drawn.
        while len(png) < BLANK_PNG_BYTES and time.monotonic() < deadline:
            time.sleep(0.5)
            png = self.page.screenshot()
        path.write_bytes(png)
        return path


# ================================================================================ the launcher
def _serve(argv: list[str]) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from app.run import serve
    from app.services import AppConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-url")
    parser.add_argument("--join-code")
    parser.add_argument("--debounce", type=float, default=1.0)
    args = parser.parse_args(argv)
    config = AppConfig(data_dir=Path(args.data_dir).resolve(), server_url=args.server_url, join_code=args.join_code,
                       fast_kdf=True, sync_debounce=args.debounce, web=True)
    serve(config, web=True, port=args.port)


if __name__ == "__main__":
    _serve(sys.argv[1:])
