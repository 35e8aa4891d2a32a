"""The time budget of ``kb tune``: how much data and how many probes to make before anything is measured
(from prior speeds per device), and how many training steps fit once seconds per step are measured.

The run's phases: probes + data, the *before* evaluation, training, refitting the gate, the *after*
evaluation. Training gets what the others leave: when the first steps are measured,

    steps = (time left - reserve) / (s/step + held-out loss evaluations per step)

where the reserve is the *after* evaluation (the *before* one, measured, times ``AFTER_FACTOR``: tuned
answers are longer), the gate refit (its searches at the measured retrieval time) and saving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

#: prior seconds per training step (batch 4, ~300 tokens, LoRA on 10 layers of SmolLM2-135M): measured
#: 2.7 s on 2 CPU cores (docs/benchmarks.md, fine-tuning)
PRIOR_SEC_PER_STEP = {"cpu": 2.7, "mps": 1.0, "cuda": 0.2}
#: prior seconds per answered probe (a generated answer on 2 CPU cores: ~1.1 s p50)
PRIOR_SEC_PER_PROBE = {"cpu": 1.5, "mps": 0.8, "cuda": 0.3}
#: planning shares of the budget before anything is measured
TRAIN_SHARE, EVAL_SHARE = 0.6, 0.1
#: passes over the training examples the data is sized for
EPOCHS_FOR_DATA = 1.6
#: the after evaluation against the measured before one (tuned answers are longer)
AFTER_FACTOR = 1.5
#: a held-out loss evaluation costs about this many training steps per batch of held-out examples
VAL_COST = 0.4
#: searches of a gate refit per answerable probe (the probe, half as many reworded, as many negatives)
GATE_SEARCHES_PER_PROBE = 2.5
SAVE_S = 10.0


@dataclass
class Budget:
    """Seconds of a run started at ``start`` (``time.perf_counter()``) with ``seconds`` to spend."""

    seconds: float
    device: str = "cpu"
    start: float = field(default_factory=time.perf_counter)
    plan: dict[str, Any] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def _prior(self, table: dict[str, float]) -> float:
        return table.get(self.device.split(":")[0], table["cpu"])

    def prior_steps(self, cap: int) -> int:
        return max(1, min(cap, int(TRAIN_SHARE * self.seconds / self._prior(PRIOR_SEC_PER_STEP))))

    def n_examples(self, cap_steps: int, batch_size: int, lo: int, hi: int) -> int:
        """Training examples for the steps the budget is expected to allow."""
        want = math.ceil(self.prior_steps(cap_steps) * batch_size / EPOCHS_FOR_DATA)
        return max(lo, min(hi, want))

    def n_probes(self, lo: int, hi: int) -> int:
        """Answerable probes: one evaluation takes about ``EVAL_SHARE`` of the budget."""
        return max(lo, min(hi, int(EVAL_SHARE * self.seconds / self._prior(PRIOR_SEC_PER_PROBE))))

    def reserve(self, before_s: float, gate_searches: int, retrieve_s: float) -> float:
        """Seconds kept for what follows training."""
        return AFTER_FACTOR * before_s + gate_searches * retrieve_s * 1.2 + SAVE_S

    def train_steps(self, sec_per_step: float, *, reserve: float, eval_every: int, n_val: int,
                    batch_size: int, cap: int) -> int:
        """Steps that fit in the time left once ``reserve`` is kept (recorded in :attr:`plan`)."""
        left = self.left() - reserve
        steps = steps_that_fit(left, sec_per_step, eval_every=eval_every, n_val=n_val, batch_size=batch_size,
                               cap=cap)
        self.plan.update(sec_per_step=round(sec_per_step, 3), train_s_left=round(left, 1), steps=steps)
        return steps


def steps_that_fit(seconds: float, sec_per_step: float, *, eval_every: int, n_val: int, batch_size: int,
                   cap: int) -> int:
    """Training steps in ``seconds`` at ``sec_per_step``, with a held-out evaluation every ``eval_every``
    steps over ``n_val`` examples; at most ``cap``, at least 1."""
    if sec_per_step <= 0:
        return cap
    eval_cost = VAL_COST * sec_per_step * math.ceil(n_val / max(batch_size, 1))
    per_step = sec_per_step + eval_cost / max(eval_every, 1)
    return max(1, min(cap, int(seconds / per_step)))


def epoch_cap(n_train: int, batch_size: int, max_epochs: float) -> int:
    """Steps of ``max_epochs`` passes over ``n_train`` examples."""
    return max(1, math.ceil(max_epochs * n_train / batch_size))


def eval_interval(steps: int, evaluations: int = 6, lo: int = 5) -> int:
    """Steps between held-out evaluations so that a run of ``steps`` has about ``evaluations`` of them."""
    return max(lo, steps // evaluations)
