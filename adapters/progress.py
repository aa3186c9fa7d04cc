"""Progress bars for the commands that run longer than a second or two.

A bar is drawn on stderr only when stderr is a terminal and ``--quiet`` is not given, so a
redirected log holds no redraw noise. tqdm is imported only when a bar is drawn.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["Bar", "progress"]


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def set_description_str(self, desc: str) -> object: ...


class _NoBar:
    def update(self, n: int = 1) -> object:
        return None

    def set_description_str(self, desc: str) -> object:
        return None


@contextmanager
def progress(total: int, desc: str, *, quiet: bool, unit: str = "episode") -> Iterator[Bar]:
    """A bar of ``total`` steps (a do-nothing one when quiet or not on a terminal)."""
    if quiet or not sys.stderr.isatty():
        yield _NoBar()
        return
    from tqdm import tqdm

    bar: Any = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
