"""tf.data over streamed training rows (trainer.stream.TrainStream), for `data.streaming: true`.

A Python generator turns each shuffled window of rows into numpy columns, cut into whole batches
(the rows left over are carried into the next window, so only the epoch's last batch is short);
tf.data looks the strings up a window at a time in a parallel map (the model's `preprocess`, as
`trainer.model.make_dataset` does once for in-memory rows) and slices the batches, so the train
step sees ids and numbers only. Each epoch draws a new seed for the window order.

A shard that cannot be read mid-epoch (deleted or rewritten since the pass) raises a DataError
naming it inside tf.data (storage that stopped answering: storage.Unreachable), which TensorFlow
reports as a multi-line InvalidArgumentError; `read_failures_named(stream)` around the training
gives back that error itself (the stream keeps
what its epochs' reads raised, so two trainings in one process never see each other's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from trainer.data import DataError, ExperimentData
from trainer.model import Preprocess, frame_tensors, make_dataset
from trainer.storage import Unreachable
from trainer.stream import TrainStream


def stream_dataset(
    stream: TrainStream, columns: dict[str, tf.DType], batch_size: int, shuffle_seed: int,
    preprocess: Preprocess | None = None,
) -> tf.data.Dataset:
    """Batches of the streamed training rows' feature dicts, reshuffled every epoch."""

    def windows(seed: np.int64) -> Iterator[dict[str, np.ndarray]]:
        try:
            yield from whole_batches(stream.windows(int(seed) & (2**63 - 1)))  # numpy seeds are never negative
        except (DataError, Unreachable) as error:
            stream.read_failures.append(error)
            raise

    def whole_batches(frames: Iterator) -> Iterator[dict[str, np.ndarray]]:
        carry: dict[str, np.ndarray] | None = None
        for window in frames:
            arrays = frame_tensors(window, columns)
            if carry is not None:
                arrays = {column: np.concatenate([carry[column], values]) for column, values in arrays.items()}
            whole = len(next(iter(arrays.values()))) // batch_size * batch_size
            if whole:
                yield {column: values[:whole] for column, values in arrays.items()}
            carry = {column: values[whole:] for column, values in arrays.items()}
        if carry is not None and len(next(iter(carry.values()))):
            yield carry

    signature = {column: tf.TensorSpec([None], dtype) for column, dtype in columns.items()}

    def read(seed: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_generator(windows, args=(seed,), output_signature=signature)

    def batches(rows: dict[str, tf.Tensor]) -> tf.data.Dataset:
        n_rows = tf.shape(next(iter(rows.values())), out_type=tf.int64)[0]
        starts = tf.data.Dataset.range(0, n_rows, batch_size)
        return starts.map(lambda start: {key: values[start : start + batch_size] for key, values in rows.items()})

    epoch_seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1)
    rows = epoch_seeds.flat_map(read)
    if preprocess is not None:
        rows = rows.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    n_batches = -(-stream.stats.n_rows // batch_size)  # whole batches, then the epoch's last rows
    rows = rows.flat_map(batches).apply(tf.data.experimental.assert_cardinality(n_batches))
    return rows.prefetch(tf.data.AUTOTUNE)


@contextlib.contextmanager
def read_failures_named(stream: TrainStream | None) -> Iterator[None]:
    """Re-raise the error a read of `stream` raised inside tf.data as itself: one line naming the
    shard, instead of TensorFlow's error that wraps it. Nothing to do for rows held in memory (None)."""
    if stream is None:
        yield
        return
    stream.read_failures.clear()
    try:
        yield
    except tf.errors.OpError:
        if stream.read_failures:
            raise stream.read_failures[-1] from None
        raise


def training_batches(
    data: ExperimentData, columns: dict[str, tf.DType], batch_size: int, shuffle_seed: int,
    preprocess: Preprocess | None = None,
) -> tf.data.Dataset:
    """The experiment's training rows as shuffled batches: held in memory, or streamed."""
    if data.train is None:
        return stream_dataset(data.stream, columns, batch_size, shuffle_seed, preprocess)
    return make_dataset(data.train, columns, batch_size, shuffle_seed=shuffle_seed, preprocess=preprocess)
