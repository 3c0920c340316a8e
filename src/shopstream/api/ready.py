"""Wait for a ``shopstream serve`` to answer ``/readyz`` (scripts, benchmarks, tests)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable


class NotReadyError(Exception):
    """The server did not become ready in time, or its process ended."""


def wait_ready(base_url: str, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not alive():
            raise NotReadyError(f"the server at {base_url} exited")
        if time.monotonic() > deadline:
            raise NotReadyError(f"{base_url}/readyz did not answer 200 within {timeout:.0f} s")
        time.sleep(0.2)
