"""The results of training, without TensorFlow: epoch metrics, the collapse verdict, an attempt's result.

`CollapseDetector` reads only `EpochMetrics` (plain numbers from the epoch's logs), so renderers,
the store and the flow can use every type here without importing TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from trainer.spec import CollapseSpec
from trainer.storage import StorageError, exists, join, read_bytes

AttemptStatus = Literal["succeeded", "collapsed", "diverged", "failed"]


class EpochMetrics(BaseModel):
    """One epoch of one attempt (epoch is 1-based; loss is the mean per example)."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    epoch: int
    loss: float
    steps: int
    examples: int
    buyer_grad_norm_mean: float
    buyer_grad_norm_max: float
    product_grad_norm_mean: float
    product_grad_norm_max: float
    nonfinite_steps: int
    seconds: float
    learning_rate: float
    val_loss: float | None = None
    uniform_gap: float | None = None
    """Mean over examples of |loss/example - log(batch size)| per step: ~0 when all scores are alike."""
    uniform_loss: float | None = None
    """The loss per example a model scoring everything alike would have had (mean of log(batch size))."""


@dataclass(frozen=True)
class Verdict:
    """Why an attempt stopped: status "collapsed" or "diverged", at a 1-based epoch."""

    status: str
    epoch: int
    reason: str


def _num(value: float) -> str:
    return f"{value:.3g}"


EXPLODED_MARGIN = 0.05
"""Ending training with a loss/example this far (relative) above log(batch) counts as diverged."""


def uniform_scores(m: EpochMetrics, collapse: CollapseSpec) -> bool:
    """The epoch's loss sat at the uniform-score loss: every candidate scored alike."""
    return m.uniform_gap is not None and m.uniform_gap < collapse.loss_tolerance


def flat_gradients(m: EpochMetrics, collapse: CollapseSpec) -> bool:
    """Every tower's mean gradient norm fell below the floor: nothing is learning."""
    floor = collapse.min_grad_norm
    return m.buyer_grad_norm_mean < floor and m.product_grad_norm_mean < floor


def exploded(m: EpochMetrics) -> bool:
    """The loss is more than EXPLODED_MARGIN above the uniform-score loss: worse than scoring alike."""
    return m.uniform_loss is not None and m.loss > m.uniform_loss * (1 + EXPLODED_MARGIN)


def ranks_better_than_uniform(m: EpochMetrics, collapse: CollapseSpec) -> bool:
    """The epoch's loss is below the uniform-score loss by more than loss_tolerance: the model ranks
    better than scoring every candidate alike (True when the uniform loss is unknown)."""
    return m.uniform_loss is None or m.loss < m.uniform_loss - collapse.loss_tolerance


def healthy(m: EpochMetrics, collapse: CollapseSpec) -> bool:
    """Whether an epoch is one to restart from: it ran, is finite, its gradients are not flat, and its loss
    is below the uniform-score loss (by more than loss_tolerance): the model ranks. An epoch at or above it
    is collapsed, exploded, or the noise after an explosion."""
    finite = m.nonfinite_steps == 0 and math.isfinite(m.loss)
    return m.steps > 0 and finite and ranks_better_than_uniform(m, collapse) and not flat_gradients(m, collapse)


class CollapseDetector:
    """Decides, epoch by epoch, whether an attempt diverged or collapsed.

    diverged: the epoch had a non-finite loss or gradient; or, when training ends (`conclude`),
    the last epoch's loss/example is more than EXPLODED_MARGIN above the uniform-score loss: worse
    than scoring every candidate alike, the exploded model that never came back.
    collapsed: `patience` consecutive epochs each with uniform scores (mean |loss/example -
    log(batch)| < loss_tolerance) or every tower's mean gradient norm below min_grad_norm; or, when
    training ends, the last epoch had uniform scores, however few epochs ran (patience only says how
    soon a collapse stops training: a model that ends scoring everything alike is never a success).
    Epochs without steps are ignored (they neither count nor break a streak). Feed it EpochMetrics
    in order; replaying stored epochs rebuilds its state (used when an attempt resumes).
    """

    def __init__(self, collapse: CollapseSpec, batch_size: int):
        self.collapse = collapse
        self.batch_size = batch_size
        self.streak: list[EpochMetrics] = []
        self.last: EpochMetrics | None = None
        self.verdict: Verdict | None = None

    def observe(self, m: EpochMetrics) -> Verdict | None:
        """Take one epoch; return the verdict once there is one (and keep returning it)."""
        if self.verdict is not None or m.steps == 0:
            return self.verdict
        if m.nonfinite_steps > 0 or not math.isfinite(m.loss):
            self.verdict = Verdict("diverged", m.epoch, self._diverged_reason(m))
            return self.verdict
        self.last = m
        failing = uniform_scores(m, self.collapse) or flat_gradients(m, self.collapse)
        self.streak = [*self.streak, m] if failing else []
        if len(self.streak) >= self.collapse.patience:
            self.verdict = Verdict("collapsed", m.epoch, self._collapsed_reason(m))
        return self.verdict

    def conclude(self) -> Verdict | None:
        """The verdict once training has ended: the one found so far, else whether it ended at uniform
        scores (collapsed), far above them (exploded: diverged), or no better than them: a loss not below
        the uniform-score loss by loss_tolerance ranks like scoring alike, however it got there (collapsed)."""
        last = self.last
        if self.verdict is None and last is not None:
            if uniform_scores(last, self.collapse):
                self.verdict = Verdict("collapsed", last.epoch, self._collapsed_reason(last, ended=True))
            elif exploded(last):
                self.verdict = Verdict("diverged", last.epoch, self._exploded_reason(last))
            elif not ranks_better_than_uniform(last, self.collapse):
                self.verdict = Verdict("collapsed", last.epoch, self._no_better_reason(last))
        return self.verdict

    def _diverged_reason(self, m: EpochMetrics) -> str:
        return (
            f"diverged at epoch {m.epoch}: non-finite loss or gradient in {m.nonfinite_steps} of {m.steps} steps "
            f"(loss/example {_num(m.loss)}; buyer grad norm max {_num(m.buyer_grad_norm_max)}, "
            f"product {_num(m.product_grad_norm_max)})"
        )

    def _exploded_reason(self, m: EpochMetrics) -> str:
        return (
            f"diverged: training ended at epoch {m.epoch} with loss/example {_num(m.loss)} above the uniform-score "
            f"loss {m.uniform_loss:.3f} (worse than scoring every candidate alike); "
            f"buyer grad norm {_num(m.buyer_grad_norm_mean)}, product {_num(m.product_grad_norm_mean)}"
        )

    def _no_better_reason(self, m: EpochMetrics) -> str:
        return (
            f"collapsed: training ended at epoch {m.epoch} with loss/example {m.loss:.4f}, no better than the "
            f"uniform-score loss {m.uniform_loss:.4f} (within {self.collapse.loss_tolerance:g}: it ranks like scoring "
            f"every candidate alike); buyer grad norm {_num(m.buyer_grad_norm_mean)}, product "
            f"{_num(m.product_grad_norm_mean)}"
        )

    def _collapsed_reason(self, m: EpochMetrics, ended: bool = False) -> str:
        n = len(self.streak)
        span = f"for {n} epoch{'s' if n > 1 else ''}" + (" until training ended" if ended else "")
        norms = f"buyer grad norm {_num(m.buyer_grad_norm_mean)}, product {_num(m.product_grad_norm_mean)}"
        if all(uniform_scores(e, self.collapse) for e in self.streak):
            uniform = f"log({self.batch_size})"
            if m.uniform_loss is not None and abs(m.uniform_loss - math.log(self.batch_size)) > 1e-3:
                # a partial last batch, or logQ correction, moves the uniform-score loss off log(batch)
                uniform = f"the uniform-score loss {m.uniform_loss:.3f}"
            return (
                f"collapsed at epoch {m.epoch}: loss/example {m.loss:.3f} = {uniform} {span} "
                f"(all candidates scored alike); {norms}"
            )
        return (
            f"collapsed at epoch {m.epoch}: every tower's gradient norm below {self.collapse.min_grad_norm:g} "
            f"or uniform scores {span}; {norms}"
        )


class StartPoint(BaseModel):
    """Where an attempt starts instead of fresh weights: `epoch` of the attempt in `workdir`."""

    attempt: int
    epoch: int
    workdir: str


def last_healthy_epoch(epochs: list[EpochMetrics], collapse: CollapseSpec) -> int | None:
    """The epoch before the trailing run of unhealthy epochs (where the failure signal began), or None
    when there is no healthy epoch before it."""
    end = len(epochs)
    while end > 0 and not healthy(epochs[end - 1], collapse):
        end -= 1
    return epochs[end - 1].epoch if end else None


def rollback_point(number: int, epochs: list[EpochMetrics], start: StartPoint | None, workdir: str,
                   collapse: CollapseSpec) -> StartPoint | None:
    """Where a rollback retry of attempt `number` (in `workdir`, itself started at `start`) starts: its
    last healthy epoch, in the attempt that holds that epoch's checkpoint; None when none was healthy."""
    epoch = last_healthy_epoch(epochs, collapse)
    if epoch is None:
        return None
    if start is not None and epoch <= start.epoch:  # an inherited epoch: its checkpoint is the source's
        return start.model_copy(update={"epoch": epoch})
    return StartPoint(attempt=number, epoch=epoch, workdir=workdir)


class AttemptResult(BaseModel):
    """How one attempt at one learning rate ended ("failed" is set by callers on infrastructure errors)."""

    status: AttemptStatus
    reason: str
    learning_rate: float
    epochs: list[EpochMetrics]
    epochs_run: int
    model_uri: str | None
    workdir: str
    start: StartPoint | None = None  # the checkpoint it started from, when not from fresh weights


EPOCHS_FILE = "checkpoints/epochs.json"
"""The epochs of an attempt's latest checkpoint, beside it in its workdir (written with each checkpoint)."""


def checkpointed_epochs(workdir: str) -> list[EpochMetrics]:
    """The epochs an attempt in `workdir` has checkpointed so far: how far a running attempt has got.
    Empty when there are none yet or they cannot be read now (a bucket that does not answer)."""
    uri = join(workdir, EPOCHS_FILE)
    try:
        return TypeAdapter(list[EpochMetrics]).validate_json(read_bytes(uri)) if exists(uri) else []
    except (StorageError, ValidationError):
        return []
