"""Chart geometry of the HTML report in SVG user units: log-scale axes and their ticks, the uniform-score
loss line, a cross for every value a log axis cannot place, the recall bars, and the overlaid loss curves of a
comparison.

Numbers only; `tasks/templates/report.html` draws them. The learning-rate probe, when there was one, gets the
same two panels with its rates across instead of epochs. Per attempt two panels: loss per example (its own
range around the uniform-score line, so a recovery's fall stays visible beside an exploded attempt's 1e7)
and gradient norms (one range across attempts, so a collapse and its recovery compare at a glance).
Pure: no Prefect, no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tasks.views import AttemptView, ProbeView, RecallView

PANEL_W, PANEL_H = 440, 250
PANEL_GAP = 20
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 14, 30, 40
CHART_W = 2 * PANEL_W + PANEL_GAP
MIN_LOG_RATIO = 1.6  # a flat series still gets a y-range wide enough for three ticks
MAX_Y_TICKS, MAX_X_TICKS = 7, 10
EDGE_INSET = 9  # a cross for a value off the log axis sits this far inside the plot's top or bottom
CROSS = 5  # half the width of a cross


def log_range(values: Sequence[float | None]) -> tuple[float, float]:
    """log10 bounds covering every positive finite value, padded; (-1, 1) when there is none."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return -1.0, 1.0
    low, high = math.log10(min(positive)), math.log10(max(positive))
    pad = max((high - low) * 0.06, (math.log10(MIN_LOG_RATIO) - (high - low)) / 2)
    return low - pad, high + pad


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values between 10**low and 10**high: decades, or 1-2-5, or 1..9 per decade when narrow."""
    span = high - low
    if span > 2.5:
        multipliers: Sequence[int] = (1,)
    elif span > 1:
        multipliers = (1, 2, 5)
    else:
        multipliers = range(1, 10)
    ticks = [
        m * 10.0**d
        for d in range(math.floor(low), math.ceil(high) + 1)
        for m in multipliers
        if low <= math.log10(m * 10.0**d) <= high
    ]
    return ticks[:: max(1, math.ceil(len(ticks) / MAX_Y_TICKS))]


@dataclass(frozen=True)
class Axis:
    """A panel's scales: epochs 1..last_epoch across, log10 `log_range` up; `left` is the panel's offset.
    Positions across may be other steps than epochs: `x_title` names them and `x_labels` labels each."""

    log_range: tuple[float, float]
    last_epoch: int
    left: float = 0.0
    x_title: str = "epoch"
    x_labels: tuple[str, ...] = ()
    top: ClassVar[float] = MARGIN_T
    bottom: ClassVar[float] = PANEL_H - MARGIN_B

    @property
    def x0(self) -> float:
        return self.left + MARGIN_L

    @property
    def x1(self) -> float:
        return self.left + PANEL_W - MARGIN_R

    @property
    def bounds(self) -> tuple[float, float]:
        """The value range shown: 10**low .. 10**high."""
        return 10 ** self.log_range[0], 10 ** self.log_range[1]

    def x(self, epoch: int) -> float:
        if self.last_epoch == 1:
            return (self.x0 + self.x1) / 2
        return self.x0 + (epoch - 1) / (self.last_epoch - 1) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        low, high = self.log_range
        return self.bottom - (math.log10(value) - low) / (high - low) * (self.bottom - self.top)

    def y_ticks(self) -> list[tuple[float, float]]:
        """(value, y) per tick on the log axis."""
        return [(tick, self.y(tick)) for tick in log_ticks(*self.log_range)]

    def x_label(self, epoch: int) -> str:
        """The label of position `epoch` (1-based): its `x_labels` entry, else the number itself."""
        return self.x_labels[epoch - 1] if self.x_labels else str(epoch)

    def x_ticks(self) -> list[tuple[int, float]]:
        """(epoch, x) for at most about MAX_X_TICKS epochs."""
        stride = max(1, math.ceil(self.last_epoch / MAX_X_TICKS))
        return [(epoch, self.x(epoch)) for epoch in range(1, self.last_epoch + 1, stride)]


@dataclass(frozen=True)
class Series:
    """One line: a value per epoch (None: not recorded; nan, inf or <= 0: marked with a cross, never drawn)."""

    label: str
    style: str  # CSS class: colour and dash
    points: list[tuple[int, float | None]]


@dataclass(frozen=True)
class Mark:
    """A recorded value: a dot on the axis, or a cross at the plot's edge ('nonfinite': NaN/±∞, 'offscale': <= 0)."""

    epoch: int
    value: float
    x: float
    y: float
    kind: str  # dot | nonfinite | offscale

    @property
    def cross(self) -> str:
        """SVG path data of a cross centred on the mark."""
        x, y, c = self.x, self.y, CROSS
        return f"M{x - c:.1f},{y - c:.1f}L{x + c:.1f},{y + c:.1f}M{x - c:.1f},{y + c:.1f}L{x + c:.1f},{y - c:.1f}"


@dataclass(frozen=True)
class Trace:
    """A series placed on an axis: polylines through runs of dots (a gap or a cross breaks a run), and marks."""

    series: Series
    runs: list[list[tuple[float, float]]]
    marks: list[Mark]


def trace(series: Series, axis: Axis) -> Trace:
    runs: list[list[tuple[float, float]]] = [[]]
    marks = []
    for epoch, value in series.points:
        if value is None:
            runs.append([])
            continue
        x = axis.x(epoch)
        if math.isfinite(value) and value > 0:
            y = axis.y(value)
            runs[-1].append((x, y))
            marks.append(Mark(epoch, value, x, y, "dot"))
            continue
        runs.append([])
        kind = "offscale" if math.isfinite(value) else "nonfinite"
        edge = axis.bottom - EDGE_INSET if kind == "offscale" else axis.top + EDGE_INSET
        marks.append(Mark(epoch, value, x, edge, kind))
    return Trace(series, [run for run in runs if len(run) > 1], marks)


@dataclass(frozen=True)
class Panel:
    """One log-scale panel: its title, axis, traces and an optional horizontal reference value."""

    title: str
    axis: Axis
    traces: list[Trace]
    reference: float | None = None

    @property
    def reference_y(self) -> float | None:
        return None if self.reference is None else self.axis.y(self.reference)


@dataclass(frozen=True)
class AttemptChart:
    """The two panels of one attempt; none when no epoch finished."""

    attempt: AttemptView
    panels: list[Panel] = field(default_factory=list)


def loss_series(attempt: AttemptView) -> list[Series]:
    epochs = attempt.epochs
    series = [Series("train loss", "loss", [(e.epoch, e.loss) for e in epochs])]
    if any(e.val_loss is not None for e in epochs):
        series.append(Series("validation loss", "val-loss", [(e.epoch, e.val_loss) for e in epochs]))
    return series


def grad_series(attempt: AttemptView) -> list[Series]:
    return [
        Series(f"{tower} {stat}", f"{tower}-{stat}",
               [(e.epoch, getattr(e, f"{tower}_grad_norm_{stat}")) for e in attempt.epochs])
        for tower in ("buyer", "product")
        for stat in ("mean", "max")
    ]


def uniform_loss(attempt: AttemptView, batch_size: int | None) -> float | None:
    """The loss per example of uniform scores: the mean recorded `uniform_loss`, else log(batch size)."""
    finite = [e.uniform_loss for e in attempt.epochs if e.uniform_loss is not None and math.isfinite(e.uniform_loss)]
    if finite:
        return sum(finite) / len(finite)
    return math.log(batch_size) if batch_size and batch_size > 1 else None


def _values(series: Sequence[Series]) -> list[float | None]:
    return [value for s in series for _, value in s.points]


def attempt_charts(attempts: Sequence[AttemptView], batch_size: int | None) -> list[AttemptChart]:
    """One chart per attempt: loss per example with the uniform-score line, and gradient norms (pre-clip)."""
    last_epoch = max([len(a.epochs) for a in attempts] + [1])
    grads = [grad_series(a) for a in attempts]
    grad_axis = Axis(log_range([v for g in grads for v in _values(g)]), last_epoch, left=PANEL_W + PANEL_GAP)
    charts = []
    for attempt, grad in zip(attempts, grads):
        if not attempt.epochs:
            charts.append(AttemptChart(attempt))
            continue
        loss, reference = loss_series(attempt), uniform_loss(attempt, batch_size)
        loss_axis = Axis(log_range([*_values(loss), reference]), last_epoch)
        charts.append(AttemptChart(attempt, [
            Panel("loss per example", loss_axis, [trace(s, loss_axis) for s in loss], reference),
            Panel("gradient norm (pre-clip)", grad_axis, [trace(s, grad_axis) for s in grad]),
        ]))
    return charts


def probe_panels(probe: ProbeView | None) -> list[Panel]:
    """The learning-rate probe's two panels, one position per probed rate (geometric, so evenly spaced in log
    rate): loss per example with the uniform-score line, and each tower's gradient norm (pre-clip)."""
    if probe is None or not probe.points:
        return []
    points = probe.points
    labels = tuple(f"{p.rate:.2g}" for p in points)
    loss = Series("loss", "loss", [(i, p.loss) for i, p in enumerate(points, start=1)])
    grads = [Series(f"{tower} mean", f"{tower}-mean",
                    [(i, getattr(p, f"{tower}_grad_norm")) for i, p in enumerate(points, start=1)])
             for tower in ("buyer", "product")]
    uniform = [p.uniform_loss for p in points if math.isfinite(p.uniform_loss)]
    reference = sum(uniform) / len(uniform) if uniform else None
    loss_axis = Axis(log_range([*_values([loss]), reference]), len(points), x_title="learning rate", x_labels=labels)
    grad_axis = Axis(log_range(_values(grads)), len(points), left=PANEL_W + PANEL_GAP, x_title="learning rate",
                     x_labels=labels)
    return [Panel("loss per example", loss_axis, [trace(loss, loss_axis)], reference),
            Panel("gradient norm (pre-clip)", grad_axis, [trace(s, grad_axis) for s in grads])]


# --- recall ----------------------------------------------------------------------------------------

BAR, BAR_GAP, BAR_LEFT, BAR_TOP, RECALL_W = 13, 12, 56, 26, 520
BAR_ROOM = 60  # right of the longest bar, for its value


@dataclass(frozen=True)
class Bar:
    """One recall bar; its value is written just right of its end."""

    k: int
    style: str  # model | popularity
    value: float
    y: float
    width: float
    x: ClassVar[float] = BAR_LEFT
    height: ClassVar[float] = BAR - 2

    @property
    def label_at(self) -> tuple[float, float]:
        """Where the bar's value is written."""
        return self.x + self.width + 4, self.y + BAR - 4


@dataclass(frozen=True)
class RecallChart:
    """Per k a model bar above a popularity bar, on one linear scale from 0 (non-finite values: 0)."""

    height: float
    bars: list[Bar]
    labels: list[tuple[int, float]]  # (k, y) of each pair's label
    width: float = RECALL_W
    left: float = BAR_LEFT


def recall_chart(rows: Sequence[RecallView]) -> RecallChart:
    finite = [v for r in rows for v in (r.value, r.baseline) if math.isfinite(v)]
    scale_max = min(1.0, max(finite + [1e-9]) * 1.2)
    plot_w = RECALL_W - BAR_LEFT - BAR_ROOM
    bars, labels = [], []
    for i, row in enumerate(rows):
        y = BAR_TOP + i * (2 * BAR + BAR_GAP)
        labels.append((row.k, y + BAR + 4))
        for j, (style, value) in enumerate((("model", row.value), ("popularity", row.baseline))):
            shown = value if math.isfinite(value) else 0.0
            bars.append(Bar(row.k, style, value, y + j * BAR, max(shown / scale_max * plot_w, 1.0)))
    return RecallChart(BAR_TOP + len(rows) * (2 * BAR + BAR_GAP) + 10, bars, labels)



# --- comparison ------------------------------------------------------------------------------------

SERIES_STYLES = 6  # distinct colours of overlaid series (`series-0` .. `series-5` in report.css), then reused


def loss_overlay(named_attempts: Sequence[tuple[str, AttemptView | None]]) -> Panel:
    """One log-scale panel with each experiment's loss per example over its final attempt's epochs, overlaid;
    `named_attempts` is (experiment name, final attempt or None) in comparison order."""
    series = [Series(name, f"series-{i % SERIES_STYLES}", [(e.epoch, e.loss) for e in attempt.epochs])
              for i, (name, attempt) in enumerate(named_attempts) if attempt is not None]
    last_epoch = max([len(s.points) for s in series] + [1])
    axis = Axis(log_range(_values(series)), last_epoch)
    return Panel("loss per example (final attempt)", axis, [trace(s, axis) for s in series])
