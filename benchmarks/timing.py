"""The one timer the benchmark scripts share (run them as ``python benchmarks/NAME.py``: this folder is on
``sys.path`` then)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 0) -> float:
    """Median wall-clock milliseconds of ``fn()`` over ``runs`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
