"""What a real-world recipe's degradation drew: each logged window's draws summarised in MLflow (how often each
kernel type, noise kind and order came up, mean JPEG qualities and resize scales: ``degradation.*`` metrics), and with
``train.log_degradations`` (a debug option) every sample's draws as JSON lines in ``<run>/degradations.jsonl``."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

from srgan_lib.training.loop import Callback, Run

if TYPE_CHECKING:
    from srgan_lib.tracking import Tracker

LOG_FILE = "degradations.jsonl"


class DegradationDraws(Callback):
    """Main process only: the trainer keeps its last batch's :class:`~srgan_lib.data.degradations.Draws`."""

    def __init__(self, tracker: Tracker, debug: bool) -> None:
        self.tracker, self.debug = tracker, debug
        self.sums: dict[str, float] = defaultdict(float)
        self.batches, self.taken = 0, -1

    def on_start(self, run: Run) -> None:
        path = run.run_dir / LOG_FILE
        if self.debug and path.exists():  # a resumed run: drop what the iterations after its checkpoint wrote
            keep = [line for line in path.read_text().splitlines()
                    if line and json.loads(line)["iteration"] <= run.start_iter]
            path.write_text("".join(f"{line}\n" for line in keep))

    def on_iteration(self, run: Run, iteration: int) -> None:
        self._take(run, iteration)

    def _take(self, run: Run, iteration: int) -> None:
        """The step's draws, once (``on_log`` comes before ``on_iteration``)."""
        draws = run.trainer.last_draws
        if draws is None or not run.ddp.main or iteration == self.taken:
            return
        self.taken = iteration
        for key, value in draws.summary().items():
            self.sums[key] += value
        self.batches += 1
        if self.debug:
            per = len(draws.jpeg1)
            with (run.run_dir / LOG_FILE).open("a") as f:
                for i in range(per):
                    sample = run.ddp.rank * per + i
                    f.write(json.dumps({"iteration": iteration, "sample": sample, **draws.describe(i)}) + "\n")

    def on_log(self, run: Run, iteration: int, row: dict[str, float]) -> None:
        self._take(run, iteration)
        if self.batches:
            self.tracker.log_metrics({f"degradation.{k}": v / self.batches for k, v in self.sums.items()}, iteration)
        self.sums.clear()
        self.batches = 0
