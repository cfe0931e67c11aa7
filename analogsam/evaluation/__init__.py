"""Evaluation on simulated hardware: the seeded Monte-Carlo protocol (:mod:`.protocol`), the
resumable result store and its statistics (:mod:`.store`) and reports (:mod:`.report`)."""

from analogsam.evaluation.protocol import (
    DEFAULT_REPEATS,
    DEFAULT_TIMES,
    derive_seed,
    evaluate,
    format_time,
    parse_times,
    sweep,
)
from analogsam.evaluation.store import ResultStore, read_rows, summarize

__all__ = ["DEFAULT_REPEATS", "DEFAULT_TIMES", "ResultStore", "derive_seed", "evaluate", "format_time",
           "parse_times", "read_rows", "summarize", "sweep"]
