"""The divergence guard: a run whose reconstruction loss has left its best value far behind, and stays there, is
stopped instead of training on to a useless generator.

A learning rate too large for the network makes the weights grow until the loss is huge but finite (RRDBNet at lr
6e-3: pixel L1 1e12-1e17 from iteration 175 to the end, a 6.96 dB generator delivered); the non-finite check never
fires. The rule reads the logged rows only (``log_every``), so it costs nothing between them: the watched loss (the
first of :data:`WATCHED` a recipe has) above :data:`FACTOR` times its best earlier logged value in :data:`ROWS` rows
in a row. A single spike that recovers (a warm-up overshoot: 130x for one row in the micro profile) is spared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The generator's reconstruction loss, in order of preference: GAN terms swing by design and are never watched
WATCHED = ("pixel", "perceptual", "total_g")
# An L1 loss on [0, 1] images 100x its best is an output off by whole value ranges: no recoverable state seen here
FACTOR = 100.0
ROWS = 3  # log rows in a row above FACTOR x the best (one or two are a spike the run may recover from)


@dataclass(frozen=True)
class Divergence:
    """Which loss diverged, its value at the last row, its best earlier value, and the iterations of both and of
    the first row of the run of bad rows (where the trouble began)."""

    term: str
    value: float
    best: float
    best_iteration: int
    began: int
    iteration: int

    def describe(self) -> str:
        return (f"the {self.term} loss was {self.value:.3g} at iteration {self.iteration}, above {FACTOR:g}x its best "
                f"{self.best:.3g} (iteration {self.best_iteration}) in every log row since iteration {self.began}")


def watched_term(row: dict[str, Any]) -> str | None:
    """The loss the guard follows for rows like ``row`` (None: the recipe logs none of :data:`WATCHED`)."""
    return next((k for k in WATCHED if k in row), None)


def diverged(history: Sequence[dict[str, Any]], factor: float = FACTOR, rows: int = ROWS) -> Divergence | None:
    """The divergence the logged ``history`` (rows with ``iteration`` and the loss terms, oldest first) shows, or
    None: its last ``rows`` rows all above ``factor`` times the smallest value of the rows before them."""
    if len(history) <= rows:
        return None
    term = watched_term(history[-1])
    if term is None:
        return None
    earlier = [(float(r[term]), int(r["iteration"])) for r in history[:-rows] if term in r]
    recent = [float(r[term]) for r in history[-rows:] if term in r]
    if not earlier or len(recent) < rows:
        return None
    best, best_it = min(earlier)
    if best <= 0 or not all(v > factor * best for v in recent):
        return None
    return Divergence(term, recent[-1], best, best_it, int(history[-rows]["iteration"]),
                      int(history[-1]["iteration"]))
