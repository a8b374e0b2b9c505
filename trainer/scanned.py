"""A streaming pass's results kept beside the attempt, and the pass run in a process of its own.

At 30M rows the one pass over a streamed table (trainer.stream.scan) takes a quarter of an hour and
leaves its process holding the memory it churned through. `scanned(spec, directory)` runs it once, in a
child process that never imports TensorFlow and whose memory ends with it, and keeps what it returns in
`directory` (an experiment's `scan/`, beside its attempts): the test and validation rows, the candidates
and the training statistics as Parquet, the rest in `manifest.json`, written last. The data check, every
attempt and the evaluation load those files instead of reading every row again. The manifest records the
spec's content hash and the size and modification time of each file the pass read (transactions and
catalogue): another spec, or data changed since, is scanned afresh.
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pandas as pd
import pyarrow as pa

from trainer.data import DataError, ExperimentData, layout, load_experiment_data
from trainer.datasets import is_builtin
from trainer.spec import ExperimentSpec, spec_from_dict
from trainer.stats import Flagged, Moments, TrainStats
from trainer.storage import as_pattern, described, exists, filesystem, is_pattern, join, open_uri, write_bytes
from trainer.stream import Piece, Source, TrainStream, scan

MANIFEST = "manifest.json"
FRAMES = ("test", "validation", "candidates")
PR_SET_PDEATHSIG = 1  # from linux/prctl.h
FORMAT = 1
"""Bumped when what is written changes, so older scans are scanned afresh."""


def workdir_scan(workdir: str) -> str:
    """Where an attempt run on its own (`python -m trainer`) keeps its scan: `<workdir>/scan` (a flow keeps
    one per experiment, beside its attempts)."""
    return join(str(workdir), "scan")


def experiment_data(spec: ExperimentSpec, scan: str | None) -> ExperimentData:
    """The spec's data: a streamed spec's pass kept in the directory `scan` (see `scanned`), else (or
    with no `scan`) loaded here."""
    if not spec.data.streaming or scan is None:
        return load_experiment_data(spec)
    return scanned(spec, scan)


def scanned(spec: ExperimentSpec, directory: str) -> ExperimentData:
    """The streamed spec's data: loaded from `directory` when a scan of the same files is kept there,
    else scanned in a child process (which keeps it there) and then loaded. DataError as the pass
    raises it."""
    source = Source(spec, layout(spec))
    data = load_scan(spec, directory, source)
    if data is None:  # none kept, one of other files, or one damaged on disk (it is only the pass's cache)
        _scan_in_child(spec, directory)
        data = load_scan(spec, directory, source)
    if data is None:
        raise RuntimeError(f"the streaming pass wrote no readable scan to {directory}")
    return data


def ensure_scanned(spec: ExperimentSpec, directory: str) -> None:
    """Scan the streamed spec in a child process unless a scan of the same files is kept in `directory`
    (a caller that has not imported TensorFlow yet keeps its own memory small while the child runs)."""
    if _kept_manifest(spec, directory) is None:
        _scan_in_child(spec, directory)


def save_scan(data: ExperimentData, directory: str) -> None:
    """Write `data` (what trainer.stream.scan returned) to `directory`, the manifest last."""
    stream = data.stream
    for name in FRAMES:
        frame = getattr(data, name)
        if frame is not None:
            _write_frame(join(directory, f"{name}.parquet"), frame)
    for number, counts in enumerate(data.stats.counts.values()):
        values = pd.DataFrame({"value": counts.index.astype(str), "rows": counts.to_numpy()})
        _write_frame(join(directory, f"counts-{number}.parquet"), values)
    manifest = {
        "format": FORMAT,
        "spec": stream.source.spec.content_hash(),
        "files": data_fingerprints(stream.source.spec),
        "columns": stream.source.columns,
        "pieces": [dataclasses.astuple(piece) for piece in stream.pieces],
        "n_rows": data.stats.n_rows,
        "counts": list(data.stats.counts),
        "moments": {column: dataclasses.asdict(m) for column, m in data.stats.moments.items()},
        "flagged": {column: dataclasses.asdict(f) for column, f in data.stats.flagged.items()},
        "has_validation": data.validation is not None,
        "n_candidate_rows_before_dedup": data.n_candidate_rows_before_dedup,
        "n_test_rows_without_candidate": data.n_test_rows_without_candidate,
        "joined_columns": list(data.joined_columns),
    }
    write_bytes(join(directory, MANIFEST), json.dumps(manifest).encode())


def load_scan(spec: ExperimentSpec, directory: str, source: Source) -> ExperimentData | None:
    """The scan kept in `directory` as ExperimentData streaming from `source` (a trainer.stream.Source
    of `spec`), or None when there is none, it is of another format or spec, the files changed since, or
    a file of it cannot be read (damaged on disk)."""
    try:
        return _loaded_scan(spec, directory, source)
    except (ValueError, KeyError, TypeError, pa.ArrowException):  # not Unreachable: an outage is no damage
        return None


def _loaded_scan(spec: ExperimentSpec, directory: str, source: Source) -> ExperimentData | None:
    manifest = _kept_manifest(spec, directory)
    if manifest is None:
        return None
    counts = {}
    for number, column in enumerate(manifest["counts"]):
        values = _read_frame(join(directory, f"counts-{number}.parquet"))
        index = pd.Index(values["value"].to_numpy(dtype=object), dtype=object, name=column)
        counts[column] = pd.Series(values["rows"].to_numpy(), index=index, name="count")
    stats = TrainStats(
        manifest["n_rows"], counts,
        {column: Moments(**m) for column, m in manifest["moments"].items()},
        {column: Flagged(**f) for column, f in manifest["flagged"].items()},
    )
    source.columns = manifest["columns"]
    pieces = tuple(Piece(*piece) for piece in manifest["pieces"])
    return ExperimentData(
        train=None,
        validation=_read_frame(join(directory, "validation.parquet")) if manifest["has_validation"] else None,
        test=_read_frame(join(directory, "test.parquet")),
        candidates=_read_frame(join(directory, "candidates.parquet")),
        stats=stats,
        n_candidate_rows_before_dedup=manifest["n_candidate_rows_before_dedup"],
        n_test_rows_without_candidate=manifest["n_test_rows_without_candidate"],
        joined_columns=tuple(manifest["joined_columns"]),
        stream=TrainStream(source, pieces, stats),
    )


def _scan_in_child(spec: ExperimentSpec, directory: str) -> None:
    """trainer.stream.scan in a fresh Python process (this module as __main__), its result saved to
    `directory`; its DataError raised here again."""
    done = subprocess.run(
        [sys.executable, "-m", "trainer.scanned", directory, str(os.getpid())],
        input=spec.model_dump_json(), capture_output=True, text=True,
    )
    if done.returncode == 0:
        return
    try:
        error = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the streaming pass failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}") from None
    raise DataError(error["message"], field=error["field"], code=error["code"])


def _kept_manifest(spec: ExperimentSpec, directory: str) -> dict[str, Any] | None:
    """The manifest of a scan in `directory` of this format, spec and files as they are now, else None."""
    uri = join(directory, MANIFEST)
    if not exists(uri):
        return None
    with open_uri(uri, "rb") as handle:
        try:
            manifest = json.load(handle)
        except ValueError:  # damaged on disk: no scan kept
            return None
    kept = isinstance(manifest, dict) and manifest.get("format") == FORMAT
    if not kept or manifest.get("spec") != spec.content_hash() or manifest.get("files") != data_fingerprints(spec):
        return None
    return manifest


def data_fingerprints(spec: ExperimentSpec) -> list[list]:
    """What says the spec's data changed: each file of the transactions and the catalogue (each shard of a glob
    or folder, from one listing) with its size and every version marker its filesystem reports; a built-in
    dataset by its name alone."""
    found = []
    for uri in filter(None, (spec.data.transactions, spec.data.products)):
        if is_builtin(uri):
            found.append([uri])
            continue
        pattern = as_pattern(uri)
        for file, info in sorted((described(pattern) if is_pattern(pattern) else {uri: None}).items()):
            if info is None:
                fs, path = filesystem(file)
                info = fs.info(path)
            found.append([file, info.get("size"), *(f"{key}={info[key]}" for key in CHANGE_MARKERS if info.get(key))])
    return found


CHANGE_MARKERS = ("mtime", "updated", "generation", "md5Hash", "LastModified", "ETag", "etag", "Last-Modified",
                  "Content-MD5", "Digest")
"""What fsspec's `info` may say about a file's version: local and GCS times, GCS generations and hashes, S3's
time and ETag, and the headers an HTTP server sends (each only where that filesystem reports it)."""


def _write_frame(uri: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=True)
    write_bytes(uri, buffer.getvalue())


def _read_frame(uri: str) -> pd.DataFrame:
    with open_uri(uri, "rb") as handle:
        return pd.read_parquet(handle)


def _end_with(parent: int) -> None:
    """Be killed when `parent` dies (Linux), so a killed attempt leaves no pass running on its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        sys.exit(1)


def main() -> int:
    """`python -m trainer.scanned DIRECTORY PARENT_PID`, the spec as JSON on stdin: scan it and save the
    result. A DataError is printed as one JSON line (message, field, code) and exits 2."""
    from trainer.memory import keep_less_freed_memory

    _end_with(int(sys.argv[2]))
    keep_less_freed_memory()
    spec = spec_from_dict(json.loads(sys.stdin.read()), source="the attempt's spec")
    try:
        data = scan(spec)
    except DataError as error:
        print(json.dumps({"message": str(error), "field": error.field, "code": error.code}))
        return 2
    save_scan(data, sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
