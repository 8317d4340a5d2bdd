"""Child processes a test started and should have ended."""

from __future__ import annotations

import psutil


def load_children() -> list[psutil.Process]:
    """This process's children, less multiprocessing's resource tracker (it lives for the session)."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())
    ]
