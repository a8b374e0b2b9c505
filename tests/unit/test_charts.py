"""tasks.charts: the report's geometry, checked in numbers (SVG user units)."""

from __future__ import annotations

import math

import pytest

from tasks import charts
from tasks.charts import Axis, Series, log_range, log_ticks, trace
from tasks.views import AttemptView, EpochView, RecallView

UNIFORM = math.log(1024)


def attempt(number: int, losses: list[float], grads: list[float], uniform: float | None = UNIFORM) -> AttemptView:
    epochs = [EpochView(epoch=e, loss=loss, steps=10, examples=640, buyer_grad_norm_mean=grad,
                        buyer_grad_norm_max=grad * 3, product_grad_norm_mean=grad / 2, product_grad_norm_max=grad * 2,
                        nonfinite_steps=0, seconds=1.0, learning_rate=0.1, uniform_loss=uniform)
              for e, (loss, grad) in enumerate(zip(losses, grads), start=1)]
    return AttemptView(number=number, learning_rate=0.1, status="succeeded", epochs_run=len(epochs), epochs=epochs)


def test_log_range_covers_every_positive_finite_value_with_padding():
    low, high = log_range([0.01, None, 100.0, math.nan, math.inf, 0.0, -3.0])
    assert low == pytest.approx(-2 - 0.24) and high == pytest.approx(2 + 0.24)  # 6 % of 4 decades each side
    assert log_range([None, math.nan]) == (-1.0, 1.0)


def test_a_flat_series_gets_a_range_wide_enough_for_ticks():
    low, high = log_range([5.0, 5.0])
    assert 10 ** (high - low) == pytest.approx(charts.MIN_LOG_RATIO)
    assert (low + high) / 2 == pytest.approx(math.log10(5.0))
    assert len(log_ticks(low, high)) >= 3


@pytest.mark.parametrize(("low", "high", "expected"), [
    (-6.0, 1.0, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]),  # wide: decades, every other one past 7
    (0.0, 2.0, [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]),  # 1-2-5
    (0.5, 0.9, [4.0, 5.0, 6.0, 7.0]),  # narrow: every integer multiple
])
def test_log_ticks(low, high, expected):
    ticks = log_ticks(low, high)
    if len(expected) > charts.MAX_Y_TICKS:
        expected = expected[::2]
    assert ticks == pytest.approx(expected)
    assert all(low <= math.log10(t) <= high for t in ticks)


def test_axis_maps_epochs_across_and_decades_up():
    axis = Axis((0.0, 2.0), last_epoch=5, left=100)
    assert (axis.x(1), axis.x(5)) == (100 + charts.MARGIN_L, 100 + charts.PANEL_W - charts.MARGIN_R)
    assert axis.x(3) == pytest.approx((axis.x(1) + axis.x(5)) / 2)
    assert (axis.y(1.0), axis.y(100.0)) == (axis.bottom, axis.top)
    assert axis.y(10.0) == pytest.approx((axis.top + axis.bottom) / 2)  # log scale: 10 halfway from 1 to 100
    assert Axis((0.0, 1.0), last_epoch=1).x(1) == pytest.approx((charts.MARGIN_L + charts.PANEL_W - charts.MARGIN_R) / 2)
    assert [epoch for epoch, _ in Axis((0.0, 1.0), last_epoch=25).x_ticks()] == [1, 4, 7, 10, 13, 16, 19, 22, 25]


def test_values_a_log_axis_cannot_place_become_crosses_at_its_edges_and_break_the_line():
    axis = Axis((0.0, 2.0), last_epoch=6)
    placed = trace(Series("loss", "loss", [(1, 10.0), (2, 20.0), (3, math.nan), (4, 30.0), (5, 0.0), (6, None)]), axis)
    assert [(m.epoch, m.kind) for m in placed.marks] == [(1, "dot"), (2, "dot"), (3, "nonfinite"), (4, "dot"),
                                                         (5, "offscale")]
    assert placed.runs == [[(axis.x(1), axis.y(10.0)), (axis.x(2), axis.y(20.0))]]  # epoch 4 alone: no line
    nan_mark, zero_mark = placed.marks[2], placed.marks[4]
    assert (nan_mark.x, nan_mark.y) == (axis.x(3), axis.top + charts.EDGE_INSET)
    assert (zero_mark.x, zero_mark.y) == (axis.x(5), axis.bottom - charts.EDGE_INSET)
    x, y = nan_mark.x, nan_mark.y
    assert nan_mark.cross == f"M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x - 5:.1f},{y + 5:.1f}L{x + 5:.1f},{y - 5:.1f}"


def test_a_collapsed_loss_lies_on_the_uniform_line_and_a_healthy_one_below_it():
    collapsed = attempt(1, [UNIFORM + 1e-5] * 3, [3e-4, 2e-5, 1e-5])
    healthy = attempt(2, [6.4, 5.8, 5.5], [0.9, 0.6, 0.45])
    first, second = charts.attempt_charts([collapsed, healthy], batch_size=None)
    loss = first.panels[0]
    assert loss.reference == pytest.approx(UNIFORM)
    assert all(abs(y - loss.reference_y) < 0.01 for _, y in loss.traces[0].runs[0])
    healthy_loss = second.panels[0]
    ys = [y for _, y in healthy_loss.traces[0].runs[0]]
    assert all(y > healthy_loss.reference_y for y in ys) and ys == sorted(ys)  # further down each epoch


def test_gradient_panels_share_one_axis_and_loss_panels_have_their_own():
    exploded = attempt(1, [1e7, 2e7], [50.0, 80.0])
    healthy = attempt(2, [6.4, 5.8], [1e-5, 1e-4])
    first, second = charts.attempt_charts([exploded, healthy], batch_size=None)
    assert first.panels[1].axis == second.panels[1].axis
    low, high = first.panels[1].axis.bounds
    assert low <= 1e-5 / 2 and high >= 80.0 * 3
    assert first.panels[0].axis != second.panels[0].axis
    assert second.panels[0].axis.bounds[1] < 10  # the healthy loss is not squashed by the exploded 1e7
    assert first.panels[1].axis.left == charts.PANEL_W + charts.PANEL_GAP


def test_uniform_loss_is_the_mean_recorded_value_else_log_batch_size():
    assert charts.uniform_loss(attempt(1, [6.0], [0.5], uniform=5.0), 1024) == 5.0
    assert charts.uniform_loss(attempt(1, [6.0], [0.5], uniform=None), 1024) == pytest.approx(UNIFORM)
    assert charts.uniform_loss(attempt(1, [6.0], [0.5], uniform=None), None) is None


def test_an_attempt_without_epochs_has_no_panels():
    (chart,) = charts.attempt_charts([AttemptView(number=1, learning_rate=0.1, status="failed")], 1024)
    assert chart.panels == []


def test_recall_bars_are_proportional_and_stacked_per_k():
    rows = [RecallView(k=k, value=value, baseline=base, n_candidates=10, n_candidate_rows_before_dedup=10,
                       n_queries=5, exclude_seen=False)
            for k, value, base in ((10, 0.25, 0.05), (100, 0.5, math.nan))]
    chart = charts.recall_chart(rows)
    model10, pop10, model100, pop100 = chart.bars
    assert model10.width / pop10.width == pytest.approx(5.0)
    plot_w = charts.RECALL_W - charts.BAR_LEFT - charts.BAR_ROOM
    assert model100.width == pytest.approx(plot_w / 1.2)  # the largest value at 1/1.2 of the plot
    assert pop100.width == 1.0  # NaN: a sliver, never a negative or missing bar
    assert pop10.y == model10.y + charts.BAR and model100.y == model10.y + 2 * charts.BAR + charts.BAR_GAP
    assert chart.height == model100.y + 2 * charts.BAR + charts.BAR_GAP + 10
    assert [k for k, _ in chart.labels] == [10, 100]
