"""The Flet app's entry: `build_main(config)` returns the `main(page)` that Flet calls once per UI
session (one window, or one browser tab in web mode). It only wires: the session's `Services`
(its own workspace: in web mode every browser session unlocks on its own), the context, the
router, connectivity and the session's end. `flet build` runs this module directly: it keeps the
data folder private (`app.files`) and, where Flet would turn the run into a web server (a Linux
without a display), serves through the gate of `app.ui.web` instead of Flet's open one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import flet as ft

from ..config import AppConfig, resolve_data_dir
from ..files import keep_private
from ..keystore import desktop_pepper, keystore_pepper
from ..services import Services
from .router import Router
from .views.base import Ctx
from .web import flet_would_serve_web, serve_web

__all__ = ["build_main", "theme", "run"]

log = logging.getLogger("outreach.app")


def theme() -> ft.Theme:
    # screens change at once: a worker in the rain waits for no slide-in (it cost ~150 ms a change)
    instant = ft.PageTransitionTheme.NONE
    return ft.Theme(color_scheme_seed=ft.Colors.TEAL, visual_density=ft.VisualDensity.STANDARD,
                    page_transitions=ft.PageTransitionsTheme(android=instant, ios=instant, linux=instant,
                                                             macos=instant, windows=instant))


async def _pepper(page: ft.Page, config: AppConfig) -> bytes:
    """The keystore's secret mixed into the PIN's KDF (see DESIGN.md): a phone's own keystore;
    on a laptop (its window or the local web mode: this process runs on the laptop) the system
    keystore when it has one. None (b""): the passphrase must resist offline guessing instead."""
    if not page.web and page.platform in (ft.PagePlatform.ANDROID, ft.PagePlatform.IOS):
        from flet_secure_storage import SecureStorage

        return await keystore_pepper(SecureStorage())
    if config.fast_kdf:  # tests: a test's data folder gets no entry in the developer's keystore
        return b""
    return await asyncio.to_thread(desktop_pepper, config.data_dir)


async def _watch_connectivity(services: Services) -> None:
    def online_of(kinds: list[Any]) -> bool:
        return any(getattr(k, "value", k) != "none" for k in kinds)

    def changed(e: Any) -> None:
        services.sync.set_online(online_of(e.connectivity))

    try:
        conn = ft.Connectivity(on_change=changed)
        kinds = await asyncio.wait_for(conn.get_connectivity(), timeout=5)
        services.sync.set_online(online_of(kinds))
    except Exception:  # no connectivity service on this platform: assume online, sync will tell
        log.info("connectivity service not available")


# How long a thread may hold the interpreter before one that waits for it gets a turn (CPython's
# default: 5 ms). The screens' event loop needs it for a moment many times per tap, while a
# background thread (the row check after unlock, a sync folding a first pull) may want it for
# seconds. Measured with `python -m bench.ui --rounds 6` (30 saves each): tap on save to "saved"
# p95 113 ms at 5 ms, 82 ms at 1 ms; the row check took as long either way (1.1-1.4 s).
UI_SWITCH_INTERVAL = 0.001


def build_main(config: AppConfig) -> Callable[[ft.Page], Awaitable[None]]:
    sys.setswitchinterval(UI_SWITCH_INTERVAL)

    async def main(page: ft.Page) -> None:
        page.title = "Outreach"
        page.theme = theme()
        page.theme_mode = ft.ThemeMode.LIGHT
        page.padding = 0
        services = Services(config, pepper=await _pepper(page, config))
        await services.preferences()
        ctx = Ctx(page, services, config)
        router = Router(ctx)
        router.follow_language()  # Flutter's own words in the app's language from the first screen on
        page.update()

        async def ended(e: Any = None) -> None:
            await router.stop()
            await services.close()

        async def disconnected(e: Any = None) -> None:
            # a dropped browser tab must not leave an unlocked session to reconnect to
            await router.lock_quietly()

        page.on_close = ended
        page.on_disconnect = disconnected
        await router.start()
        page.run_task(_watch_connectivity, services)

    return main


def run() -> None:
    """`flet build`'s and `python -m app.ui.main`'s entry."""
    data_dir = keep_private(resolve_data_dir())
    if flet_would_serve_web():
        assets = Path(__file__).resolve().parent.parent.parent / "assets"
        serve_web(build_main(AppConfig(data_dir=data_dir, web=True)), assets_dir=str(assets),
                  announce=lambda url: print(f"Open the app in your browser: {url}", flush=True))
    else:
        ft.run(build_main(AppConfig(data_dir=data_dir)))


if __name__ == "__main__":
    run()
