"""The learning-rate probe on tiny synthetic data: a real range test through the model's own train step."""

import math

import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)

from tiny_configs import tiny_config
from trainer.lr_probe import run_probe
from trainer.probe_curve import probe_rates
from trainer.spec import spec_from_dict


def test_the_probe_climbs_the_ladder_until_the_loss_fails_and_suggests_a_rate_below_it():
    spec = spec_from_dict(tiny_config(validation__lr_probe_steps=100))
    curve = run_probe(spec)
    points = curve.points
    assert [p.rate for p in points] == pytest.approx(probe_rates(0.05)[:len(points)])
    assert all(p.steps == 5 for p in points)
    # a fresh model scores all alike: at the lowest rate its loss is the model's own uniform-score loss
    # (with logQ correction, not log(256)), which the probe must read from the model
    assert points[0].loss == pytest.approx(points[0].uniform_loss, abs=0.01)
    assert abs(points[0].uniform_loss - math.log(256)) > 0.05
    assert all(p.buyer_grad_norm > 0 and p.product_grad_norm > 0 for p in points)
    assert points[-1].rate == curve.failure_rate and len(points) < 20  # stopped at the first failing rate
    assert min(p.loss for p in points) < points[0].loss  # it learned before failing
    assert curve.best_rate < curve.failure_rate
    assert curve.suggested_rate == pytest.approx(min(curve.best_rate, curve.failure_rate / 10), rel=0.05)
    assert curve.seconds > 0
