"""RDKit's log lines during an evaluation: silenced, and counted by kind for the report.

RDKit writes a line to stderr for many odd generated molecules ("WARNING: not removing hydrogen atom without
neighbors" for a lone H, dozens per run), which buries the evaluation's own output and says nothing a count
would not. Inside `counting_rdkit_messages()` those lines are counted by kind (time stamp dropped, numbers
as '#') and not printed. Worker processes count their own: `parallel_map` runs each item through
`call_counting_messages` there and adds the counts it sends back to the caller's open counts.

The first use routes RDKit's log to Python's `logging` (logger "rdkit") for the rest of the process; outside
a counting block that logger's own handler prints to stderr, as RDKit did before. Messages RDKit blocks
(`rdBase.BlockLogs`) are neither printed nor counted.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

from rdkit import rdBase

from modalities.molecule.evaluation.chemistry_metrics import reason_category

_OPEN: list[Counter] = []  # counts of the counting blocks open in this process, outermost first
_TIME_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")


def message_kind(message: str) -> str:
    """'[05:00:01] WARNING: ... atom 12 ...' -> 'WARNING: ... atom # ...' (numbers masked, at most 120 chars)."""
    return reason_category(" ".join(_TIME_STAMP.sub("", message.strip()).split()))


class _Counting(logging.Handler):
    """Counts each record in every open block (an outer block's count includes its inner blocks')."""

    def emit(self, record: logging.LogRecord) -> None:
        kind = message_kind(record.getMessage())
        for counts in _OPEN:
            counts[kind] += 1


_HANDLER = _Counting()
_SAVED: dict = {}


def _start() -> None:
    rdBase.LogToPythonLogger()
    logger = logging.getLogger("rdkit")
    _SAVED["handlers"], _SAVED["propagate"] = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [_HANDLER], False


def _stop() -> None:
    logger = logging.getLogger("rdkit")
    logger.handlers, logger.propagate = _SAVED.pop("handlers"), _SAVED.pop("propagate")


@contextmanager
def counting_rdkit_messages() -> Iterator[Counter]:
    """Within the block RDKit prints nothing; the yielded Counter maps message kind -> count (this process's
    messages and those that workers of `parallel_map` send back)."""
    counts: Counter = Counter()
    if not _OPEN:
        _start()
    _OPEN.append(counts)
    try:
        yield counts
    finally:
        _OPEN.pop()
        if not _OPEN:
            _stop()


def counting() -> bool:
    """Whether a counting block is open in this process (then workers should count theirs too)."""
    return bool(_OPEN)


def add_counts(counts: dict[str, int]) -> None:
    """Add message counts from another process to every open block."""
    for open_counts in _OPEN:
        open_counts.update(counts)


def call_counting_messages(function: Callable, item) -> tuple[object, dict[str, int]]:
    """(function(item), counts of the RDKit messages it caused): what a worker process sends back."""
    with counting_rdkit_messages() as counts:
        result = function(item)
    return result, dict(counts)
