"""The reading of a learning-rate range test, on synthetic curves (no TensorFlow)."""

import math
import subprocess
import sys

import pytest

from trainer.probe_curve import ProbePoint, analyse, first_failure, probe_finding, probe_rates

UNIFORM = math.log(256)


def curve(losses, nonfinite=(), rates=None):
    rates = rates or probe_rates(0.05, len(losses))
    return [ProbePoint(rate=r, loss=loss, uniform_loss=UNIFORM, buyer_grad_norm=1.0, product_grad_norm=1.0,
                       nonfinite_steps=int(i in nonfinite), steps=10)
            for i, (r, loss) in enumerate(zip(rates, losses))]


def test_rates_are_geometric_and_span_the_configured_rate():
    rates = probe_rates(0.1)
    assert len(rates) == 20 and rates[0] == pytest.approx(1e-4) and rates[-1] == pytest.approx(10.0)
    assert all(b / a == pytest.approx(rates[1] / rates[0]) for a, b in zip(rates, rates[1:]))
    assert probe_rates(100.0)[-1] == pytest.approx(1000.0) and probe_rates(1e-6)[0] == pytest.approx(1e-9)


def test_collapse_to_the_uniform_plateau_ends_the_curve_and_the_suggestion_is_where_the_loss_stopped_falling():
    points = curve([UNIFORM, UNIFORM - 0.2, UNIFORM - 1.0, UNIFORM - 1.5, UNIFORM - 1.4, UNIFORM, UNIFORM])
    result = analyse(points, seconds=3.0)
    assert (result.failure, result.failure_rate) == ("collapsed", points[5].rate)
    assert result.best_rate == points[3].rate
    assert result.suggested_rate == float(f"{points[3].rate:.2g}")  # far below a tenth of the collapse rate
    assert "collapsed" in result.reason and result.seconds == 3.0


def test_on_a_plateau_the_best_rate_is_where_the_loss_stopped_falling_not_its_noisy_minimum():
    points = curve([UNIFORM, UNIFORM - 1.0, UNIFORM - 1.9, UNIFORM - 1.95, UNIFORM - 2.0])
    assert analyse(points).best_rate == points[2].rate


def test_the_suggestion_stays_a_decade_below_the_first_failing_rate():
    points = curve([UNIFORM, UNIFORM - 1.0, UNIFORM - 2.0, math.inf], rates=[0.01, 0.1, 0.5, 1.0])
    result = analyse(points)
    assert result.best_rate == points[2].rate and result.suggested_rate == pytest.approx(points[3].rate / 10)
    assert "a tenth of the failing rate" in result.reason


def test_the_untrained_start_on_the_plateau_is_not_a_collapse():
    assert first_failure(curve([UNIFORM, UNIFORM, UNIFORM - 0.5])) is None


def test_a_non_finite_step_or_a_loss_above_uniform_is_divergence():
    assert first_failure(curve([UNIFORM, UNIFORM - 1, UNIFORM - 1.2], nonfinite={2})) == (2, "diverged")
    assert first_failure(curve([UNIFORM, UNIFORM - 1, math.nan])) == (2, "diverged")
    assert first_failure(curve([UNIFORM, UNIFORM - 1, UNIFORM * 1.5])) == (2, "diverged")


def test_a_model_that_starts_above_the_uniform_loss_diverges_only_above_its_start():
    # normalized towers at a low temperature: random cosines / 0.1 are far from alike
    assert first_failure(curve([UNIFORM * 1.2, UNIFORM * 1.2, UNIFORM - 1])) is None
    assert first_failure(curve([UNIFORM * 1.2, UNIFORM - 1, UNIFORM * 1.3])) == (2, "diverged")


def test_giving_back_half_of_what_was_learned_is_where_the_loss_stopped_falling():
    assert first_failure(curve([UNIFORM, UNIFORM - 2.0, UNIFORM - 0.9])) == (2, "rising")
    assert first_failure(curve([UNIFORM, UNIFORM - 2.0, UNIFORM - 1.1])) is None  # noise, not a turn


def test_a_curve_that_never_learned_suggests_nothing():
    result = analyse(curve([UNIFORM, UNIFORM, UNIFORM * 2]))
    assert result.suggested_rate is None and result.failure == "diverged" and "no rate suggested" in result.reason


def test_a_curve_without_failure_still_suggests_below_its_minimum():
    points = curve([UNIFORM, UNIFORM - 1, UNIFORM - 2, UNIFORM - 3])
    result = analyse(points)
    assert result.failure is None and result.suggested_rate == float(f"{points[-1].rate:.2g}")


def test_the_finding_warns_only_above_the_best_rate_and_names_both_suggestions():
    points = curve([UNIFORM, UNIFORM - 1.0, UNIFORM - 1.5, UNIFORM])
    result = analyse(points)
    assert probe_finding(result, result.best_rate, 0.01) is None
    finding = probe_finding(result, 10.0, 0.01)
    assert finding.code == "lr_probe_suggests" and finding.severity == "warning"
    assert finding.field == "training.learning_rate" and "rule-based suggestion is 0.01" in finding.message
    assert f"training.learning_rate: {result.suggested_rate:g}" in finding.suggestion


def test_the_curve_module_imports_no_tensorflow():
    code = "import sys, trainer.probe_curve; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
