"""tf.data over streamed rows: whole batches, every training row once an epoch, ids looked up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf

import trainer.stream as stream
from trainer.data import DataError, load_experiment_data
from trainer.model import build_model, model_columns
from trainer.spec import spec_from_dict
from trainer.stream_input import read_failures_named, stream_dataset

from test_stream import HASH, config, transactions, write


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_ROWS", 700)


def test_an_epoch_is_whole_batches_of_every_training_row_then_the_rest(tmp_path):
    uri = write(transactions(), tmp_path, "parquet")
    spec = spec_from_dict(config(uri, HASH, streaming=True))
    memory = load_experiment_data(spec_from_dict(config(uri, HASH, streaming=False)))
    data = load_experiment_data(spec)
    dataset = stream_dataset(data.stream, model_columns(spec), batch_size=512, shuffle_seed=3)
    batches = [{key: values.numpy() for key, values in batch.items()} for batch in dataset]
    sizes = [len(batch["buyer"]) for batch in batches]
    n_train = len(memory.train)
    assert sizes == [512] * (n_train // 512) + [n_train % 512] and len(dataset) == len(sizes)
    rows = pd.DataFrame({key: np.concatenate([b[key] for b in batches]) for key in ("buyer", "item")})
    expected = memory.train[["buyer", "item"]].astype(str)
    assert sorted(map(tuple, rows.astype(str).to_numpy())) == sorted(map(tuple, expected.to_numpy()))
    again = next(iter(dataset))["buyer"].numpy()
    assert not np.array_equal(again, batches[0]["buyer"])  # the next epoch reads in another order


def test_the_models_preprocess_turns_streamed_strings_into_ids(tmp_path):
    spec = spec_from_dict(config(write(transactions(), tmp_path, "csv"), HASH, streaming=True))
    data = load_experiment_data(spec)
    model = build_model(spec, data.stats, data.candidates)
    batch = next(iter(stream_dataset(data.stream, model_columns(spec), 256, 1, model.preprocess)))
    assert all(values.dtype.is_integer or values.dtype.is_floating for values in batch.values())
    assert float(model.compute_loss(batch)) > 0


def test_a_shard_unreadable_mid_epoch_is_named_in_one_line(tmp_path):
    uri = write(transactions(), tmp_path, "csv")
    spec = spec_from_dict(config(uri, HASH, streaming=True))
    data = load_experiment_data(spec)
    (tmp_path / "shards" / "part-1.csv").write_bytes(b'buyer,item,ts,price,words\n"unterminated,1,2,3,x\n')
    dataset = stream_dataset(data.stream, model_columns(spec), batch_size=512, shuffle_seed=3)
    with pytest.raises(tf.errors.InvalidArgumentError):  # what TensorFlow says by itself: a multi-line dump
        list(dataset)
    with pytest.raises(DataError) as raised, read_failures_named(data.stream):
        list(dataset)
    assert str(raised.value).startswith(f"{uri}/part-1.csv: cannot be read as csv") and "\n" not in str(raised.value)
    assert raised.value.field == "data.transactions"


def test_storage_that_stops_answering_mid_epoch_is_an_outage_not_bad_data(tmp_path, monkeypatch):
    from trainer.storage import Unreachable

    uri = write(transactions(), tmp_path, "csv")
    spec = spec_from_dict(config(uri, HASH, streaming=True))
    data = load_experiment_data(spec)

    def gone(*_args, **_kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(stream, "csv_frames", gone)  # each read of a shard from here on meets a dead endpoint
    dataset = stream_dataset(data.stream, model_columns(spec), batch_size=512, shuffle_seed=3)
    with pytest.raises(Unreachable) as raised, read_failures_named(data.stream):
        list(dataset)
    assert not isinstance(raised.value, DataError) and "cannot be reached (" in str(raised.value)
