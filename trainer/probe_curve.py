"""What a learning-rate range test measured, and the rate it suggests; pure (no TensorFlow, no Prefect).

`trainer.lr_probe` trains a fresh model for a few steps at each rate of a geometric ladder (`probe_rates`),
the weights carrying over from rate to rate (Smith 2015), and records per rate a `ProbePoint`: loss per
example, the uniform-score loss (every candidate scored alike), per-tower gradient norms, non-finite steps.
`analyse` reads that curve in rate order:
- the model is *learning* once its loss is LEARNED_MARGIN (relative) below the uniform-score loss;
- the curve *fails* at the first rate that is non-finite or more than EXPLODED_MARGIN above both the
  uniform loss and the loss at the first rate ("diverged"; normalized towers at a low temperature start
  above the uniform loss: their random scores are far from alike), back on the uniform plateau after
  learning ("collapsed": the collapse signature), or has given back more than GIVEN_BACK of what it had
  learned ("rising");
- the *best* rate is where the loss stopped falling: the lowest rate before the failure whose loss is
  within FLAT_SHARE of what was learned (uniform loss - lowest loss) of the lowest loss;
- the suggestion is the best rate, at most a tenth of the first failing rate, to two significant digits
  (a rate people write in a config).
Why: beyond the knee a higher rate buys no lower loss, only risk; and a decade below the failure because
the ladder's weights were warmed up by the lower rates, while an attempt starts fresh at a constant rate
for epochs. Measured (bench/bench_lr_probe.py): a tenth of the minimum's rate (fastai's rule) avoided
the collapse demo's backoff but under-trained it (recall@10 0.32 against 0.46 at the backed-off 0.1).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from trainer.results import EXPLODED_MARGIN
from trainer.rules import Finding, warning

LOW_RATE, HIGH_RATE = 1e-4, 10.0
PROBE_RATES = 20  # rungs of the ladder; lr_probe_steps are shared among them
LEARNED_MARGIN = 0.02  # a loss this far (relative) below the uniform-score loss has learned something
PLATEAU_MARGIN = 0.005  # back within this (relative) of the uniform-score loss after learning: collapsed
GIVEN_BACK = 0.5  # the loss has given back this share of what it learned: it stopped falling
FLAT_SHARE = 0.1  # a loss this close (share of what was learned) to the lowest: the loss has stopped falling
SAFETY = 10.0  # the suggestion stays this factor below the first failing rate


class ProbePoint(BaseModel):
    """What the steps at one rate measured (means over those steps; norms pre-clip)."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    rate: float
    loss: float
    uniform_loss: float
    buyer_grad_norm: float
    product_grad_norm: float
    nonfinite_steps: int = 0
    steps: int = 0


class ProbeCurve(BaseModel):
    """A range test and its reading: where the loss stopped falling before the first failing rate, and the suggestion."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    points: list[ProbePoint]
    best_rate: float | None = None
    failure_rate: float | None = None
    failure: str | None = None  # diverged | collapsed | rising
    suggested_rate: float | None = None
    reason: str
    seconds: float = 0.0


def probe_rates(configured: float, count: int = PROBE_RATES) -> list[float]:
    """`count` geometric rates from 1e-4 (or 1/1000 of `configured`) to 10 (or 10x `configured`)."""
    low = min(LOW_RATE, configured / 1000)
    high = max(HIGH_RATE, configured * 10)
    ratio = (high / low) ** (1 / (count - 1))
    return [low * ratio**i for i in range(count)]


def failure(point: ProbePoint, lowest: float, start: float) -> str | None:
    """Why `point` fails, given the lowest loss at the rates before it (inf if none) and the loss at the first
    rate `start`; None when it does not."""
    uniform = point.uniform_loss
    ceiling = max(uniform, start) if math.isfinite(start) else uniform
    if point.nonfinite_steps or not math.isfinite(point.loss) or point.loss > ceiling * (1 + EXPLODED_MARGIN):
        return "diverged"
    if lowest >= uniform * (1 - LEARNED_MARGIN):
        return None  # nothing learned yet: on the plateau because it has not left it
    if abs(point.loss - uniform) <= uniform * PLATEAU_MARGIN:
        return "collapsed"
    if point.loss - lowest > GIVEN_BACK * (uniform - lowest):
        return "rising"
    return None


def first_failure(points: list[ProbePoint]) -> tuple[int, str] | None:
    """The index of the first failing point (rates ascending) and why it fails, or None."""
    lowest = math.inf
    for index, point in enumerate(points):
        kind = failure(point, lowest, points[0].loss)
        if kind is not None:
            return index, kind
        lowest = min(lowest, point.loss)
    return None


_WORDS = {"diverged": "diverged", "collapsed": "collapsed to the uniform-score loss",
          "rising": "rose again (gave back half of what it learned)"}


def analyse(points: list[ProbePoint], seconds: float = 0.0) -> ProbeCurve:
    """Read a range test's curve (`points` in ascending rate order); see the module docstring."""
    found = first_failure(points)
    before = points if found is None else points[:found[0]]
    failed = {} if found is None else {"failure_rate": points[found[0]].rate, "failure": found[1]}
    ending = (f"no failure up to lr {points[-1].rate:.3g}" if found is None else
              f"the loss {_WORDS[found[1]]} at lr {points[found[0]].rate:.3g}")
    learning = [p for p in before if p.loss < p.uniform_loss * (1 - LEARNED_MARGIN)]
    if not learning:
        return ProbeCurve(points=points, seconds=seconds, **failed,
                          reason=f"the loss never fell {LEARNED_MARGIN:.0%} below the uniform-score loss "
                                 f"over {len(points)} rates; {ending}: no rate suggested")
    lowest = min(learning, key=lambda p: p.loss)
    flat = lowest.loss + FLAT_SHARE * (lowest.uniform_loss - lowest.loss)
    best = next(p for p in learning if p.loss <= flat)
    bound = min(best.rate, math.inf if found is None else points[found[0]].rate / SAFETY)
    capped = "a tenth of the failing rate, " if bound < best.rate else ""
    suggested = float(f"{bound:.2g}")
    return ProbeCurve(
        points=points, seconds=seconds, best_rate=best.rate, suggested_rate=suggested, **failed,
        reason=(f"the loss stopped falling at lr {best.rate:.3g} ({best.loss:.3f}; lowest {lowest.loss:.3f}, "
                f"uniform scores {lowest.uniform_loss:.3f}); {ending}: suggesting {capped}{suggested:g}"),
    )


def probe_finding(curve: ProbeCurve, configured: float, rule_rate: float) -> Finding | None:
    """The `lr_probe_suggests` warning when `configured` is above the probe's best rate (past where the
    loss stopped falling), beside the rule-based suggestion `rule_rate`; None otherwise."""
    if curve.suggested_rate is None or configured <= curve.best_rate:
        return None
    suggested = f"{curve.suggested_rate:g}"
    return warning(
        "lr_probe_suggests", "training.learning_rate",
        f"the learning-rate probe measured {curve.reason}; the configured {configured:g} is above its best rate "
        f"(the rule-based suggestion is {rule_rate:g})",
        f"training.learning_rate: {suggested} (or --set training.learning_rate={suggested})",
    )
