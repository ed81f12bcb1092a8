"""The CLI run in-process for tests: `cli_runner(...)` gives `run(*args, data_dir=...)` ->
(exit code, stdout, stderr) on a data folder under the test's tmp_path, with the passphrase (and
the language) in the environment as a script would set them; `ok` asserts success."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main

PASS = "correct horse 42"
Run = Callable[..., tuple[int, str, str]]


def cli_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *,
               passphrase: str = PASS, lang: str | None = "en") -> Run:
    """`lang=None`: no OUTREACH_LANG (the CLI's own default)."""
    monkeypatch.setenv("OUTREACH_PASSPHRASE", passphrase)
    if lang is None:
        monkeypatch.delenv("OUTREACH_LANG", raising=False)
    else:
        monkeypatch.setenv("OUTREACH_LANG", lang)

    def go(*args: str, data_dir: str | Path = "dev") -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["--data-dir", str(tmp_path / data_dir), *args])  # an absolute data_dir stays itself
        out, err = capsys.readouterr()
        return rc, out, err

    return go


def ok(run: Run, *args: str, **kw: str) -> str:
    rc, out, err = run(*args, **kw)
    assert rc == 0, err
    return out
