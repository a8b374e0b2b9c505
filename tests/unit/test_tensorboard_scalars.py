"""An attempt's per-epoch scalars, as TensorBoard itself reads them from attempt-N/tb."""

import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.attempt import _write_scalars
from trainer.results import EpochMetrics


def _epoch(epoch: int, loss: float, val_loss: float | None) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch, loss=loss, steps=10, examples=640, buyer_grad_norm_mean=0.5, buyer_grad_norm_max=0.9,
        product_grad_norm_mean=0.25, product_grad_norm_max=0.4, nonfinite_steps=0, seconds=1.0,
        learning_rate=0.05, val_loss=val_loss, uniform_gap=0.3,
    )


def test_each_epoch_is_a_scalar_step_tensorboard_reads_and_absent_values_are_left_out(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    _write_scalars(writer, _epoch(1, 4.5, None))
    _write_scalars(writer, _epoch(2, 3.25, 3.5))
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()

    def scalars(tag):
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"  # TensorBoard's Scalars tab
        return [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in events.Tensors(tag)]

    tags = events.Tags()["tensors"]
    assert {"loss_per_example", "grad_norm/buyer_mean", "grad_norm/product_max", "learning_rate"} <= set(tags)
    assert scalars("loss_per_example") == [(1, 4.5), (2, 3.25)]
    assert scalars("val_loss_per_example") == [(2, 3.5)]
    assert scalars("grad_norm/product_max")[0][1] == pytest.approx(0.4)
