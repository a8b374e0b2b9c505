"""gs:// for real: data, configs, checkpoints, the export and the report in a bucket of a GCS JSON API
emulator on loopback (gcp-storage-emulator, started here and stopped by PID), reached the way a gcsfs
user reaches one: STORAGE_EMULATOR_HOST. No GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT is set: towerflow's
own default must keep gcsfs off the Storage Control API (else every operation would hang ~60 s)."""

from __future__ import annotations

import gzip
import io
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from faults import last_epoch, log_text, resumed_at, slow_config, start_towerflow, towerflow, towerflow_env, wait_for
from tiny_configs import TINY_DATA, tiny_config

from flows.prefect_api import stop_process
from trainer import storage
from trainer.datasets import load_builtin

BUCKET = "towerflow-test"
BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_emulator(port: int, log, on_disk=None) -> subprocess.Popen:
    """The emulator on `port` once it answers, holding its objects in memory, or under the folder `on_disk`
    (so that one started again there still has them)."""
    where = ["--in-memory"] if on_disk is None else []
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [os.path.join(BIN, "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
             *where, "--default-bucket", BUCKET, "--quiet"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=os.environ | ({} if on_disk is None else {"STORAGE_BASE": str(on_disk)}),
        )
    wait_for("the GCS emulator", lambda: _answers(port), timeout_s=30, every_s=0.2)
    return process


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator's endpoint, with the bucket created; STORAGE_EMULATOR_HOST set for this process."""
    port = _free_port()
    process = start_emulator(port, tmp_path_factory.mktemp("gcs") / "emulator.log")
    endpoint = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")}
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    try:
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def env(emulator, tmp_path):
    env = towerflow_env(tmp_path, STORAGE_EMULATOR_HOST=emulator)
    env.pop("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", None)
    return env


def gs(path: str) -> str:
    return f"gs://{BUCKET}/{path}"


def upload_tables(prefix: str) -> dict[str, str]:
    """The tiny synthetic tables in the bucket: transactions as CSV and CSV.gz, products as Parquet."""
    transactions = load_builtin(TINY_DATA.format(table="transactions"))
    products = load_builtin(TINY_DATA.format(table="products"))
    csv = transactions.to_csv(index=False).encode()
    uris = {"csv": gs(f"{prefix}/tx.csv"), "csv.gz": gs(f"{prefix}/tx.csv.gz"), "parquet": gs(f"{prefix}/products.parquet")}
    storage.write_bytes(uris["csv"], csv)
    storage.write_bytes(uris["csv.gz"], gzip.compress(csv))
    buffer = io.BytesIO()
    products.to_parquet(buffer, index=False)
    storage.write_bytes(uris["parquet"], buffer.getvalue())
    return uris


def upload_config(path: str, config: dict) -> str:
    storage.write_bytes(gs(path), yaml.safe_dump(config).encode())
    return gs(path)


def bucket_files(prefix: str) -> list[str]:
    fs, root = storage.filesystem(gs(prefix))
    return [path[len(root) + 1:] for path in fs.find(root)]


def test_csv_csv_gz_and_parquet_in_the_bucket_validate_with_their_data(env):
    tables = upload_tables("formats")
    for transactions in (tables["csv"], tables["csv.gz"]):
        config = tiny_config(name="formats")
        config["data"] = {"transactions": transactions, "products": tables["parquet"]}
        uri = upload_config(f"configs/formats-{transactions.rsplit('.', 1)[-1]}.yaml", config)
        started = time.monotonic()
        done = towerflow(env, "validate", "--data", uri)
        assert done.returncode == 0, done.stdout + done.stderr
        assert time.monotonic() - started < 30  # no Storage Control retries


def test_parquet_and_csv_gz_shards_in_the_bucket_load_as_one_table_and_a_differing_shard_is_named(env):
    from trainer.data import load_table

    transactions = load_builtin(TINY_DATA.format(table="transactions"))
    parts = [transactions.iloc[i::3] for i in range(3)]
    for i, part in enumerate(parts):
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        storage.write_bytes(gs(f"shards/parquet/part-{i}.parquet"), buffer.getvalue())
        storage.write_bytes(gs(f"shards/csv/part-{i}.csv.gz"), gzip.compress(part.to_csv(index=False).encode()))
    storage.write_bytes(gs("shards/parquet/_SUCCESS"), b"")
    expected = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(load_table(gs("shards/parquet/")), expected)
    pd.testing.assert_frame_equal(load_table(gs("shards/csv/part-*.csv.gz")), expected)

    for name, shards in (("parquet", gs("shards/parquet/")), ("csv", gs("shards/csv/*.csv.gz"))):
        config = tiny_config(name=f"shards-{name}")
        config["data"] = {"transactions": shards, "products": None}
        done = towerflow(env, "validate", "--data", upload_config(f"configs/shards-{name}.yaml", config))
        assert done.returncode == 0, done.stdout + done.stderr

    renamed = parts[2].rename(columns={"customer_id": "buyer"}).to_csv(index=False).encode()
    storage.write_bytes(gs("shards/csv/part-2.csv.gz"), gzip.compress(renamed))
    done = towerflow(env, "run", upload_config("configs/shards-csv.yaml", config))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        f"data.transactions: {gs('shards/csv/*.csv.gz')}: shard {gs('shards/csv/part-2.csv.gz')} differs from "
        f"{gs('shards/csv/part-0.csv.gz')}: missing customer_id; extra buyer [shard_schemas_differ]"
    ) in done.stderr


def test_a_missing_object_fails_in_one_line_naming_its_uri(env):
    missing = gs("configs/nobody-wrote-this.yaml")
    done = towerflow(env, "run", missing)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert missing in done.stderr and "file not found" in done.stderr  # the invalid-config report

    config = tiny_config(name="missing-data")
    config["data"] = {"transactions": gs("data/absent.csv.gz"), "products": None}
    done = towerflow(env, "validate", "--data", upload_config("configs/missing-data.yaml", config))
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert gs("data/absent.csv.gz") in done.stdout + done.stderr


def test_an_unreachable_endpoint_fails_at_once_in_one_line(env):
    env = env | {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{_free_port()}"}
    started = time.monotonic()
    done = towerflow(env, "run", gs("configs/x.yaml"))
    assert time.monotonic() - started < 30
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert gs("configs/x.yaml") in done.stderr and "cannot be reached" in done.stderr


@pytest.mark.slow
def test_an_experiment_on_gcs_leaves_checkpoints_export_and_report_in_the_bucket(env, tmp_path):
    tables = upload_tables("run")
    config = tiny_config(name="on-gcs", training__epochs=3, artifacts=gs("artifacts"))
    config["data"] = {"transactions": tables["csv.gz"], "products": tables["parquet"]}
    done = towerflow(env, "run", upload_config("configs/on-gcs.yaml", config))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    files = bucket_files("artifacts")
    [attempt] = {path.split("/attempt-1/")[0] + "/attempt-1" for path in files if "/attempt-1/" in path}
    inside = {path[len(attempt) + 1:] for path in files if path.startswith(attempt + "/")}
    assert {"attempt.json", "result.json", "checkpoints/checkpoint", "checkpoints/epochs.json",
            "checkpoints/ckpt-3.index", "model/saved_model/saved_model.pb",
            "model/candidate_embeddings.npy", "model/candidate_ids.npy"} <= inside
    assert any(path.startswith("tb/events.out.tfevents") for path in inside)
    assert any(path.endswith(".html") and "attempt-" not in path for path in files), files

    local = tmp_path / "saved_model"
    storage.download(gs(f"artifacts/{attempt}/model/saved_model"), local)
    load = (
        "import trainer, tensorflow as tf, sys; m = tf.saved_model.load(sys.argv[1]); "
        "out = m.signatures['serving_default'](customer_id=tf.constant(['c0', 'c1'])); "
        "print(tuple(out['product_ids'].shape))"
    )
    loaded = subprocess.run([sys.executable, "-c", load, str(local)], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in env.items() if k != "STORAGE_EMULATOR_HOST"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "(2, 10)"


def test_a_streamed_experiment_on_gcs_keeps_its_one_pass_in_the_bucket(env):
    tables = upload_tables("streamed")
    config = tiny_config(name="streamed-on-gcs", artifacts=gs("streamed-artifacts"))
    config["data"] = {"transactions": tables["csv.gz"], "products": tables["parquet"], "streaming": True,
                      "split": {"strategy": "hash", "test_fraction": 0.2}}
    done = towerflow(env, "run", upload_config("configs/streamed-on-gcs.yaml", config))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    files = bucket_files("streamed-artifacts")
    kept = {path.split("/", 1)[1] for path in files if "/scan/" in path}
    assert {"scan/manifest.json", "scan/test.parquet", "scan/candidates.parquet"} <= kept, files


@pytest.mark.slow
def test_a_run_killed_mid_attempt_resumes_from_the_checkpoint_in_the_bucket(env, tmp_path):
    epochs = 12
    config = yaml.safe_load(open(slow_config(tmp_path, "killed-on-gcs", epochs)))
    uri = upload_config("configs/killed-on-gcs.yaml", config | {"artifacts": gs("killed")})
    log = tmp_path / "first.log"
    first = start_towerflow(env, log, "run", uri)
    try:
        wait_for("epoch 3", lambda: last_epoch(log_text(log)) >= 3 or first.poll() is not None)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        stop_process(first)
    killed_at = last_epoch(log_text(log))
    assert 3 <= killed_at < epochs, log_text(log)[-2000:]

    again = towerflow(env, "run", uri)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert resumed_at(output) >= killed_at  # at most the epoch in progress was lost, and it came from the bucket
    assert any(path.endswith(f"checkpoints/ckpt-{epochs}.index") for path in bucket_files("killed"))


@pytest.mark.slow
def test_a_bucket_that_stops_answering_mid_attempt_stops_the_run_and_a_rerun_continues(env, tmp_path):
    port = _free_port()  # a bucket of this test's own, on disk, to stop and start again
    bucket = start_emulator(port, tmp_path / "own-emulator.log", on_disk=tmp_path)
    env = env | {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    config = yaml.safe_load(open(slow_config(tmp_path, "bucket-gone", 200)))
    config_path = tmp_path / "bucket-gone.yaml"
    config_path.write_text(yaml.safe_dump(config | {"artifacts": gs("gone")}))
    log = tmp_path / "first.log"
    first = start_towerflow(env, log, "run", str(config_path))
    try:
        wait_for("epoch 3", lambda: last_epoch(log_text(log)) >= 3 or first.poll() is not None)
        os.killpg(bucket.pid, signal.SIGKILL)  # the endpoint is gone; gcsfs retries for about a minute
        bucket.wait(timeout=10)
        first.wait(timeout=240)
    finally:
        stop_process(first)
    said = log_text(log)
    stopped_at = last_epoch(said)
    assert first.returncode == 1 and stopped_at < 200, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    [line] = [line for line in said.splitlines() if line.startswith("experiment stopped: ")]
    assert "cannot be reached" in line and line.endswith(
        "run the same config again once it answers: it continues from the last checkpoint"), line

    bucket = start_emulator(port, tmp_path / "own-emulator.log", on_disk=tmp_path)
    try:
        again = towerflow(env, "run", str(config_path))
    finally:
        os.killpg(bucket.pid, signal.SIGTERM)
        bucket.wait(timeout=10)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]  # not the failure of an outage: the experiment was never failed
    assert resumed_at(output) >= stopped_at  # at most the epoch in progress was lost


@pytest.mark.slow
def test_watch_on_a_bucket_prefix_submits_a_config_that_serve_runs_from_the_bucket(env, tmp_path):
    import json

    from faults import serve_until_ready, stop_left_server

    tables = upload_tables("watched-data")
    config = tiny_config(name="watched-on-gcs", training__epochs=2, artifacts=gs("watched-artifacts"))
    config["data"] = {"transactions": tables["csv"], "products": tables["parquet"]}
    upload_config("watched/new.yaml", config)
    serve, _ = serve_until_ready(env, tmp_path / "serve.log")
    try:
        watched = towerflow(env, "watch", gs("watched"), "--once")
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert f"submitted: {gs('watched/new.yaml')}" in watched.stdout

        def ended():
            done = towerflow(env, "results", "watched-on-gcs", "--json")
            detail = json.loads(done.stdout) if done.returncode == 0 else None
            return detail if detail and detail["experiment"]["status"] not in ("pending", "running") else None

        detail = wait_for("the watched experiment to end", ended, timeout_s=300, every_s=2)
    finally:
        stop_process(serve)
        stop_left_server(env)
    assert detail["experiment"]["status"] == "succeeded", detail["experiment"]["message"]
    files = bucket_files("watched-artifacts")
    assert f"configs/{detail['experiment']['config_hash']}.yaml" in files  # the run read its config from here
    assert any(path.endswith("/attempt-1/result.json") for path in files)
    again = towerflow(env, "watch", gs("watched"), "--once")
    assert "submitted" not in again.stdout  # an unchanged object is not submitted twice
