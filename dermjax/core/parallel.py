"""One map over worker processes with a progress bar, for the offline stages."""
from __future__ import annotations

import multiprocessing
from typing import Callable, Iterable

from tqdm import tqdm


def map_with_progress(fn: Callable, jobs: Iterable, *, workers: int, total: int, desc: str, unit: str,
                      progress: bool = True, chunksize: int = 1) -> list:
    """[fn(job) for job in jobs], in order, over `workers` processes when workers > 1.

    `fn` must be a module-level function (the workers import it). Processes are spawned, not
    forked: the caller may hold JAX/XLA threads, which fork would corrupt.
    """
    results = []
    with tqdm(total=total, desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for r in pool.imap(fn, jobs, chunksize=chunksize):
                    results.append(r)
                    bar.update()
        else:
            for job in jobs:
                results.append(fn(job))
                bar.update()
    return results
