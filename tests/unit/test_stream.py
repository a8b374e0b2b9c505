"""The streamed path (`data.streaming`) reads the same data as the in-memory path, a chunk at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import trainer.stream as stream
from trainer.data import DataError, load_experiment_data
from trainer.datacheck import check_loaded
from trainer.spec import spec_from_dict
from trainer.stats import Moments, StatsAccumulator, TrainStats

HASH = {"strategy": "hash", "test_fraction": 0.2, "seed": 7}
CUTOFF = {"strategy": "time", "column": "ts", "cutoff": 800}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 700 rows, so every piece is read in several and windows mix pieces."""
    monkeypatch.setattr(stream, "CHUNK_ROWS", 700)


def transactions(n: int = 12_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "buyer": [f"b{i}" for i in rng.integers(0, 400, n)],
        "item": [f"i{i}" for i in rng.integers(0, 250, n)],
        "ts": rng.integers(0, 1000, n),
        "price": rng.normal(10, 3, n),
        "words": rng.choice(["red shoe", "blue", "red hat", ""], n),
    })
    frame.loc[[5, n // 2], "price"] = np.nan
    return frame


def write(frame: pd.DataFrame, tmp_path, kind: str) -> str:
    """`frame` as one Parquet file of 1,500-row groups, or as three CSV shards in a folder."""
    if kind == "parquet":
        path = tmp_path / "tx.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=1500)
        return str(path)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, start in enumerate(range(0, len(frame), -(-len(frame) // 3))):
        frame.iloc[start : start - (-len(frame) // 3)].to_csv(folder / f"part-{i}.csv", index=False)
    return str(folder)


def config(uri: str, split: dict, *, streaming: bool, validation: float = 0.0, **data) -> dict:
    return {
        "name": "streamed",
        "data": {"transactions": uri, "split": split, "streaming": streaming, **data},
        "buyer_features": [{"column": "buyer", "type": "id"}],
        "product_features": [
            {"column": "item", "type": "id", "is_primary_id": True},
            {"column": "price", "type": "numeric"},
            {"column": "words", "type": "text"},
        ],
        "training": {"validation_fraction": validation},
    }


def both_ways(uri: str, split: dict, validation: float = 0.0, **data):
    def load(streaming):
        return load_experiment_data(spec_from_dict(config(uri, split, streaming=streaming, validation=validation, **data)))

    return load(False), load(True)


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({c: str for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)})


@pytest.mark.parametrize("kind", ["parquet", "csv"])
@pytest.mark.parametrize(("split", "validation"), [(HASH, 0.1), (CUTOFF, 0.0)], ids=["hash", "cutoff"])
def test_a_streamed_pass_finds_what_loading_everything_finds(tmp_path, kind, split, validation):
    memory, streamed = both_ways(write(transactions(), tmp_path, kind), split, validation)
    assert streamed.train is None and memory.train is not None
    pd.testing.assert_frame_equal(as_text(streamed.test), as_text(memory.test))  # rows, values, file positions
    pd.testing.assert_frame_equal(as_text(streamed.candidates), as_text(memory.candidates))
    if validation:
        pd.testing.assert_frame_equal(as_text(streamed.validation), as_text(memory.validation))
    assert streamed.stats.n_rows == memory.stats.n_rows == len(memory.train)
    for column, counts in memory.stats.counts.items():
        pd.testing.assert_series_equal(streamed.stats.counts[column].sort_index(), counts.sort_index(), check_names=False)
    expected, got = memory.stats.moments["price"], streamed.stats.moments["price"]
    assert (got.count, got.missing) == (expected.count, expected.missing)
    assert got.mean == pytest.approx(expected.mean, rel=1e-12) and got.m2 == pytest.approx(expected.m2, rel=1e-12)
    assert check_loaded(spec_from_dict(config("x.csv", split, streaming=True)), streamed) == check_loaded(
        spec_from_dict(config("x.csv", split, streaming=False)), memory
    )


def test_an_epoch_reads_every_training_row_once_in_windows_shuffled_by_its_seed(tmp_path):
    memory, streamed = both_ways(write(transactions(), tmp_path, "parquet"), HASH)
    key = list(memory.train.columns)

    def epoch(seed):
        windows = list(streamed.stream.windows(seed))
        assert max(map(len, windows)) <= stream.INTERLEAVE * stream.CHUNK_ROWS
        return as_text(pd.concat(windows, ignore_index=True))[key]

    first, again, other = epoch(1), epoch(1), epoch(2)
    expected = as_text(memory.train)[key]
    for rows in (first, other):
        pd.testing.assert_frame_equal(
            rows.sort_values(key, ignore_index=True), expected.sort_values(key, ignore_index=True), check_dtype=False
        )
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert first[key].head(50).merge(expected[key].head(50)).shape[0] < 50  # not the file's order


def test_streamed_training_pairs_are_the_training_rows_pairs(tmp_path):
    memory, streamed = both_ways(write(transactions(), tmp_path, "csv"), HASH)
    buyers = ["b1", "b7", "b300"]
    for who in (None, buyers):
        got = as_text(streamed.train_pairs("buyer", "item", who)).sort_index()
        pd.testing.assert_frame_equal(got, as_text(memory.train_pairs("buyer", "item", who)).sort_index())
    assert set(got["buyer"]) == set(buyers)


def test_a_catalogue_is_joined_to_every_chunk(tmp_path):
    frame = transactions()
    catalogue = frame.drop_duplicates("item")[["item", "price", "words"]].assign(price=1.5)
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    uri = write(frame.drop(columns=["price"]), tmp_path, "parquet")
    memory, streamed = both_ways(uri, HASH, products=str(tmp_path / "catalogue.csv"))
    assert streamed.joined_columns == memory.joined_columns == ("price",)
    pd.testing.assert_frame_equal(as_text(streamed.test), as_text(memory.test))
    assert streamed.stats.moments["price"] == memory.stats.moments["price"]


def test_a_blank_id_in_a_later_chunk_is_named_by_its_row_in_the_file(tmp_path):
    frame = transactions()
    frame.loc[9_876, "buyer"] = " "
    with pytest.raises(DataError, match=r"blank in 1 row\(s\), first at data row 9877") as raised:
        load_experiment_data(spec_from_dict(config(write(frame, tmp_path, "parquet"), HASH, streaming=True)))
    assert raised.value.field == "buyer_features[0].column"


@pytest.mark.parametrize(
    ("split", "field"),
    [({"strategy": "random"}, "data.split.strategy"), ({"strategy": "time", "column": "ts"}, "data.split.strategy"),
     ({"strategy": "time", "column": "ts", "cutoff": 5000}, "data.split.cutoff")],
    ids=["random", "time by fraction", "cutoff after every row"],
)
def test_a_split_the_stream_cannot_make_is_refused_naming_the_field(tmp_path, split, field):
    with pytest.raises(DataError) as raised:
        load_experiment_data(spec_from_dict(config(write(transactions(), tmp_path, "csv"), split, streaming=True)))
    assert raised.value.field == field and "\n" not in str(raised.value)


def test_an_unreadable_shard_is_named(tmp_path):
    uri = write(transactions(), tmp_path, "csv")
    (tmp_path / "shards" / "part-1.csv").write_bytes(b"buyer,item,ts,price,words\n\"unterminated,1,2,3,x\n")
    with pytest.raises(DataError, match="part-1.csv: cannot be read as csv") as raised:
        load_experiment_data(spec_from_dict(config(uri, HASH, streaming=True)))
    assert raised.value.code == "data_unreadable"


def test_a_shard_row_with_a_field_past_the_header_is_named_by_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_ROWS", 700)
    uri = write(transactions(), tmp_path, "csv")
    shard = tmp_path / "shards" / "part-2.csv"
    lines = shard.read_text().splitlines()
    lines[3_000] += ",stray"  # in the shard's fifth chunk
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as raised:
        load_experiment_data(spec_from_dict(config(uri, HASH, streaming=True)))
    assert str(raised.value) == (f"{shard}: cannot be read as csv: Error tokenizing data. "
                                 "C error: Expected 5 fields in line 3001, saw 6")
    assert raised.value.field == "data.transactions"


def test_statistics_added_a_chunk_at_a_time_equal_those_of_the_whole():
    frame = transactions(5_000, seed=3).astype({"buyer": "category"})
    types = {"buyer": "id", "words": "text", "price": "numeric"}
    accumulator = StatsAccumulator(types)
    for start in range(0, len(frame), 800):
        accumulator.add(frame.iloc[start : start + 800])
    pieces, whole = accumulator.finish(), TrainStats.of(frame, types)
    assert pieces.n_rows == whole.n_rows == 5_000
    for column in ("buyer", "words"):
        pd.testing.assert_series_equal(pieces.counts[column].sort_index(), whole.counts[column].sort_index())
    assert pieces.token_counts("words").to_dict() == whole.token_counts("words").to_dict()
    assert pieces.moments["price"].variance == pytest.approx(np.nanvar(frame["price"]), rel=1e-12)
    assert pieces.moments["price"].missing == 2 and Moments().merge(Moments()) == Moments()
