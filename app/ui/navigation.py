"""What a screen may ask of the navigation: the `Navigator` the router implements (the screen
shown, where to go after an unlock, a redraw after a language change, locking now). The screens
and their context (`views.base.Ctx`) know the router only through this interface, so the router
imports the screens and no screen imports the router back. Nothing here builds a control.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Navigator", "ShownScreen"]


class ShownScreen(Protocol):
    """The screen on show, as far as leaving it is concerned (a half-filled form asks first)."""

    @property
    def disposed(self) -> bool: ...

    def unsaved(self) -> bool: ...

    def discard(self) -> None: ...


class Navigator(Protocol):
    """The session's navigation, as the screens see it (`ui.router.Router` implements it)."""

    @property
    def screen(self) -> ShownScreen | None:
        """The screen shown now (None before the first)."""
        ...

    @property
    def after_unlock(self) -> str:
        """The route to show once the lock screen is passed (where the user was)."""
        ...

    async def rerender(self) -> None:
        """Draw the shown screen again (the language or the layout changed)."""
        ...

    async def lock(self) -> None:
        """Lock the session now and show the lock screen."""
        ...
