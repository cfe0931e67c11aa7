"""Where a sweep's tasks run: in this process, on local processes, or as Ray tasks; one function.

:func:`run_tasks` calls ``fn(*task)`` for every task and yields each result as it finishes. The
sweep (:func:`analogsam.evaluation.sweep`) decides what a task is and what to do with its rows; this
module decides only where it runs, so the measuring code does not know about processes or Ray, and
the executors do not import the measuring code (``fn`` is an argument).

- ``workers=1`` and no Ray: each task in turn, in this process (``fn`` may be any callable).
- ``workers=N``: N local processes (``spawn``, each with an equal share of torch's threads);
  ``fn`` and the tasks must pickle (a module-level function, plain data).
- ``ray=True`` or ``ray="HEAD:6379"``: one Ray task per task (:func:`.ray_sweep.tasks_on_ray`).

Closing the generator early (an error, Ctrl-C) ends the processes or cancels the Ray tasks still
pending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from analogsam.evaluation.ray_sweep import tasks_on_ray

__all__ = ["run_tasks"]


def run_tasks(fn: Callable, tasks: Iterable[tuple], *, workers: int = 1, ray=None) -> Iterator:
    """``fn(*task)`` for each of ``tasks``, yielded as each finishes (in order when serial).

    ``ray`` is None (no Ray), True (a local Ray with ``workers`` CPUs if ``workers > 1``, else all of
    them) or a cluster address; ``workers > 1`` without Ray spreads the tasks over that many local
    processes.
    """
    tasks = list(tasks)
    if ray is not None:
        yield from tasks_on_ray(fn, tasks, address=ray, num_cpus=workers if workers > 1 else None)
    elif workers > 1:
        yield from _on_local_processes(fn, tasks, workers)
    else:
        for task in tasks:
            yield fn(*task)


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def _on_local_processes(fn: Callable, tasks: list[tuple], workers: int) -> Iterator:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, torch.get_num_threads() // workers)
    # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
    with ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_set_threads, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
