"""The router's order of screens when taps come faster than screens load (no browser): Flet hands
each event to a task of its own, so a second route can be asked for while the first one still
loads, and the worker must end up where they tapped last, with the address bar saying so."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from test_ui_services import run  # asyncio.run in a thread of its own (Playwright may hold this one's loop)

from app.ui.router import Router


class FakePage:
    def __init__(self) -> None:
        self.route = "/today"
        self.navigated: list[str] = []

    def navigate(self, route: str) -> None:
        self.navigated.append(route)


def _router(redirects: dict[str, str] | None = None) -> tuple[Router, FakePage, list[str], asyncio.Event]:
    """A router whose screens take no time to draw, except /desk, which loads until `slow` is set."""
    page = FakePage()
    router = Router(SimpleNamespace(page=page, router=None))  # type: ignore[arg-type]
    shown: list[str] = []
    slow = asyncio.Event()

    async def resolve(route: str) -> str:
        return (redirects or {}).get(route, route)

    async def render(route: str, *, force: bool = False) -> None:
        shown.append(route)
        if route == "/desk":
            await slow.wait()
        router.route = route

    router._resolve = resolve  # type: ignore[method-assign]
    router._render = render  # type: ignore[method-assign]
    return router, page, shown, slow


def _asked(route: str) -> Any:
    return SimpleNamespace(route=route)  # what Flet's route change event carries


def test_a_tab_tapped_while_the_overview_loads_is_where_the_worker_lands() -> None:
    async def scenario() -> None:
        router, page, shown, slow = _router()
        overview = asyncio.create_task(router._on_route_change(_asked("/desk")))
        await asyncio.sleep(0.01)  # the overview is loading
        reports = asyncio.create_task(router._on_route_change(_asked("/desk/reports")))
        await asyncio.sleep(0.01)
        slow.set()
        await asyncio.gather(overview, reports)
        assert shown[-1] == "/desk/reports" and router.route == "/desk/reports"
        assert page.navigated == []  # the address bar is not sent back to the overview
        assert router.url == "/desk/reports"

    run(scenario())


def test_taps_queued_behind_a_loading_screen_show_only_the_last() -> None:
    async def scenario() -> None:
        router, page, shown, slow = _router()
        overview = asyncio.create_task(router._on_route_change(_asked("/desk")))
        await asyncio.sleep(0.01)
        later = [asyncio.create_task(router._on_route_change(_asked(r))) for r in ("/desk/devices", "/desk/review")]
        await asyncio.sleep(0.01)
        slow.set()
        await asyncio.gather(overview, *later)
        assert shown == ["/desk", "/desk/review"] and page.navigated == []

    run(scenario())


def test_a_route_sent_elsewhere_still_sets_the_address_bar() -> None:
    async def scenario() -> None:
        router, page, shown, _slow = _router(redirects={"/desk": "/today"})  # e.g. a worker's device
        await router._on_route_change(_asked("/desk"))
        assert shown == ["/today"] and page.navigated == ["/today"] and router.url == "/today"

    run(scenario())
