"""What the daemon keeps is for its own user only: folders 0700, files 0600.

The daemon also sets its umask to 0077 (tap.makeService), so whatever else it creates
is private too; these make it so whatever the umask, and for folders that existed.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Make `path` (and its missing parents) and keep it for the daemon's user alone."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    if path.stat().st_mode & 0o777 != FOLDER_MODE:
        path.chmod(FOLDER_MODE)
    return path


def private_file(path: Path) -> None:
    """Keep an existing file for the daemon's user alone (nothing if it is not there)."""
    try:
        path.chmod(FILE_MODE)
    except FileNotFoundError:
        pass


def create_private(path: Path) -> int:
    """A new file (never an existing one) open for writing, readable by its owner alone."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
