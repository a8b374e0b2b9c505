"""trainer.scanned: a streamed pass run in a child process and kept beside the attempt, then reused."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace


import pandas as pd
import pytest
from test_stream import CUTOFF, HASH, as_text, config, transactions, write

import trainer.scanned as scanned_module
from trainer.data import DataError
from trainer.scanned import MANIFEST, data_fingerprints, scanned
from trainer.spec import spec_from_dict
from trainer.stream import scan


def streamed_spec(uri: str, split: dict = HASH, validation: float = 0.1):
    return spec_from_dict(config(uri, split, streaming=True, validation=validation))


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_kept_scan_is_what_the_pass_returns(tmp_path, kind):
    spec = streamed_spec(write(transactions(), tmp_path, kind))
    kept, direct = scanned(spec, str(tmp_path / "scan")), scan(spec)
    for name in ("test", "validation", "candidates"):
        pd.testing.assert_frame_equal(as_text(getattr(kept, name)), as_text(getattr(direct, name)))
    assert kept.stats.n_rows == direct.stats.n_rows
    for column, counts in direct.stats.counts.items():
        pd.testing.assert_series_equal(kept.stats.counts[column].sort_index(), counts.sort_index(), check_names=False)
    assert (kept.stats.moments, kept.stats.flagged) == (direct.stats.moments, direct.stats.flagged)
    assert kept.stream.pieces == direct.stream.pieces and kept.joined_columns == direct.joined_columns
    epoch = [as_text(window) for window in kept.stream.windows(3)]  # the kept scan streams the same epochs
    for got, expected in zip(epoch, direct.stream.windows(3), strict=True):
        pd.testing.assert_frame_equal(got, as_text(expected))


def test_a_kept_scan_is_reused_and_changed_data_is_scanned_afresh(tmp_path, monkeypatch):
    uri = write(transactions(), tmp_path, "parquet")
    spec, kept = streamed_spec(uri), str(tmp_path / "scan")
    first = scanned(spec, kept)
    children = []
    real_child = scanned_module._scan_in_child
    monkeypatch.setattr(scanned_module, "_scan_in_child", lambda *args: children.append(args) or real_child(*args))
    again = scanned(spec, kept)
    assert children == [] and len(again.test) == len(first.test)  # no second pass

    write(transactions(n=9_000, seed=1), tmp_path, "parquet")  # the same path, other rows
    changed = scanned(spec, kept)
    assert len(children) == 1 and changed.stats.n_rows != first.stats.n_rows


@pytest.mark.parametrize("damaged, damage", [
    ("test.parquet", b"PAR1 cut short"), ("counts-0.parquet", b""), (MANIFEST, b'{"format": 1, "sp'), (MANIFEST, b"[]"),
])
def test_a_kept_scan_damaged_on_disk_is_scanned_again(tmp_path, damaged, damage):
    spec, kept = streamed_spec(write(transactions(), tmp_path, "parquet")), tmp_path / "scan"
    first = scanned(spec, str(kept))
    (kept / damaged).write_bytes(damage)
    again = scanned(spec, str(kept))
    pd.testing.assert_frame_equal(as_text(again.test), as_text(first.test))
    assert again.stats.n_rows == first.stats.n_rows and (kept / damaged).read_bytes() != damage  # written again


def test_a_data_error_in_the_child_is_raised_here_with_its_field_and_nothing_is_kept(tmp_path):
    spec = streamed_spec(write(transactions(), tmp_path, "csv"), {**CUTOFF, "cutoff": 5000}, validation=0.0)
    with pytest.raises(DataError) as raised:
        scanned(spec, str(tmp_path / "scan"))
    assert raised.value.field == "data.split.cutoff" and raised.value.code == "too_little_data"
    assert "holds out no row" in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "scan" / MANIFEST).exists()


def test_the_pass_ends_when_the_attempt_that_started_it_is_killed(tmp_path):
    from flows.processes import alive

    launcher = (  # an attempt's stand-in: starts the pass, which waits for its spec on a stdin that never ends
        "import os, subprocess, sys, time\n"
        "read, write = os.pipe()\n"
        f"child = subprocess.Popen([sys.executable, '-m', 'trainer.scanned', {str(tmp_path)!r}, str(os.getpid())],"
        " stdin=read, pass_fds=(write,))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has asked to die with its parent
    assert alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def test_a_changed_catalogue_is_scanned_afresh(tmp_path, monkeypatch):
    frame = transactions()
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(frame.drop_duplicates("item")[["item", "price", "words"]].to_csv(index=False))
    raw = config(write(frame.drop(columns=["price"]), tmp_path, "parquet"), HASH, streaming=True,
                 products=str(catalogue))
    spec, kept = spec_from_dict(raw), str(tmp_path / "scan")
    scanned(spec, kept)
    children = []
    real_child = scanned_module._scan_in_child
    monkeypatch.setattr(scanned_module, "_scan_in_child", lambda *args: children.append(args) or real_child(*args))
    catalogue.write_text(catalogue.read_text() + "i_new,1.0,new\n")  # a product added to the catalogue
    candidates = scanned(spec, kept).candidates
    assert len(children) == 1 and "i_new" in set(candidates["item"].astype(str))


def test_a_file_served_over_http_is_fingerprinted_by_what_the_server_says_of_it(tmp_path):
    """Over http(s) fsspec reports no mtime, only the headers: a same-size rewrite is seen by its
    Last-Modified (and, where the server sends them, its ETag or Content-MD5)."""
    import functools
    import http.server
    import os
    import threading

    served = tmp_path / "tx.csv"
    served.write_text("customer_id,product_id\na,b\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/tx.csv"
    spec = SimpleNamespace(data=SimpleNamespace(transactions=url, products=None))
    try:
        os.utime(served, (1_700_000_000, 1_700_000_000))
        before = data_fingerprints(spec)
        served.write_text("customer_id,product_id\nc,d\n")  # the same size
        os.utime(served, (1_700_000_100, 1_700_000_100))
        after = data_fingerprints(spec)
    finally:
        server.shutdown()
    assert before[0][1] == after[0][1]
    assert before != after


def test_the_fingerprints_of_a_glob_see_a_shard_come_or_change(tmp_path):
    for number in (0, 1):
        (tmp_path / f"part-{number}.csv").write_text("customer_id,product_id\na,b\n")
    spec = SimpleNamespace(data=SimpleNamespace(transactions=str(tmp_path / "part-*.csv"), products=None))
    before = data_fingerprints(spec)
    assert [entry[0] for entry in before] == [str(tmp_path / "part-0.csv"), str(tmp_path / "part-1.csv")]
    (tmp_path / "part-2.csv").write_text("customer_id,product_id\na,b\n")
    assert len(data_fingerprints(spec)) == 3
    (tmp_path / "part-2.csv").unlink()
    (tmp_path / "part-1.csv").write_text("customer_id,product_id\na,b\nc,d\n")
    assert data_fingerprints(spec)[0] == before[0] and data_fingerprints(spec)[1] != before[1]
