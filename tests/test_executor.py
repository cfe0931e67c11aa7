"""One executor for a sweep's tasks (analogsam.evaluation.executor.run_tasks): the function is an
argument, and in this process or on local processes it gives each task's result once."""

import operator

import pytest

from analogsam.evaluation.executor import run_tasks


def test_in_this_process_each_task_in_order_and_any_callable():
    seen = []

    def measure(a, b):  # a closure: fine in this process, where nothing is pickled
        seen.append((a, b))
        return a * b

    assert list(run_tasks(measure, [(1, 2), (3, 4), (5, 6)])) == [2, 12, 30]
    assert seen == [(1, 2), (3, 4), (5, 6)]


def test_closing_early_runs_no_further_task():
    calls = []
    tasks = run_tasks(lambda k: calls.append(k) or k, [(k,) for k in range(5)])
    assert next(tasks) == 0
    tasks.close()
    assert calls == [0]


@pytest.mark.slow  # starts two processes
def test_on_local_processes_every_task_once():
    results = list(run_tasks(operator.mul, [(k, k) for k in range(6)], workers=2))
    assert sorted(results) == [k * k for k in range(6)]  # in the order they finished
