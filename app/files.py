"""This device's files are its user's alone: `keep_private(data_dir)`, called first by every entry
point (the app, `make run`, the CLI), sets the process's umask to 077, so that every file and folder
it or a child process (the local server) creates is 0600 or 0700, and takes the group's and
others' bits off the data folder and the files already in it (a log made 0644 by an earlier version,
a folder made 0755). It never follows a symbolic link, never goes deeper than the data folder's own
sub-folders and never adds a bit; where POSIX modes mean nothing (Windows, some Android storage) it
does what the platform allows and says nothing. It must never delete, move or read a file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "keep_private", "tighten"]

PRIVATE_UMASK = 0o077  # new files 0600, new folders 0700
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def tighten(path: Path) -> None:
    """Take the group's and others' bits off `path` (a folder or a regular file, not a link)."""
    try:
        st = path.lstat()
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return
    if st.st_mode & _OTHERS:
        with contextlib.suppress(OSError):  # a file of another user, a platform without modes
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~_OTHERS)


def keep_private(data_dir: Path) -> Path:
    """Set the umask to 077 (a folder made from now on is 0700, a file 0600) and tighten
    `data_dir`, if it is there, with its files and its sub-folders' files (the app's own folder
    of `make run`). Creates nothing. Returns `data_dir`."""
    os.umask(PRIVATE_UMASK)
    tighten(data_dir)
    for child in _entries(data_dir):
        tighten(child)
        if child.is_dir() and not child.is_symlink():
            for grandchild in _entries(child):
                tighten(grandchild)
    return data_dir


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []
