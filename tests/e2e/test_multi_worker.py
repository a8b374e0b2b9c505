"""Two workers under MultiWorkerMirroredStrategy on loopback (TF_CONFIG by hand, CPU): they train
the single-worker loss at the same global batch, and only the chief writes the workdir."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny_configs import tiny_config

pytestmark = pytest.mark.slow  # three TensorFlow processes: about a minute on two cores

ROOT = Path(__file__).resolve().parents[2]
EPOCH_LINE = re.compile(r"^epoch (\d+): loss/example ([0-9.]+)", re.MULTILINE)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports the kernel has just handed out on 127.0.0.1 (all held at once, then released)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for one in sockets:
            one.bind(("127.0.0.1", 0))
        return [one.getsockname()[1] for one in sockets]


@pytest.fixture
def processes():
    """Started trainer processes; any still alive at teardown is killed by its PID."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, 9)
            process.wait(timeout=30)


def start(processes: list, config: Path, out: Path, log: Path, tmp: Path, tf_config: dict | None = None):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmp)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    tmp.mkdir()
    command = [sys.executable, "-m", "trainer", "--config", str(config), "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    processes.append(process)
    return process


def test_two_workers_train_the_single_worker_loss_and_only_the_chief_writes(tmp_path, processes):
    configs = {}
    for workers in (1, 2):
        configs[workers] = tmp_path / f"workers-{workers}.yaml"
        configs[workers].write_text(yaml.safe_dump(tiny_config(training__workers=workers, training__epochs=2)))
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    # The worker is given its own --out: in a real job both name one workdir, here an empty path
    # shows that the worker writes nothing to what it takes for the workdir.
    runs = {
        "chief": (configs[2], {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 0}}),
        "worker": (configs[2], {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 1}}),
        "single": (configs[1], None),
    }
    started = {
        name: start(processes, config, tmp_path / name, tmp_path / f"{name}.log", tmp_path / f"tmp-{name}", tf)
        for name, (config, tf) in runs.items()
    }
    for name, process in started.items():
        assert process.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in runs}

    chief = tmp_path / "chief"
    for written in ("attempt.json", "result.json", "checkpoints/checkpoint", "checkpoints/ckpt-2.index",
                    "checkpoints/epochs.json", "model/saved_model/saved_model.pb", "model/candidate_ids.npy"):
        assert (chief / written).is_file(), written
    assert list((chief / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "worker").exists()  # nothing in the workdir ...
    assert not list((tmp_path / "tmp-worker").iterdir())  # ... and its local checkpoints are gone
    assert "succeeded" in logs["worker"]

    chief_epochs = json.loads((chief / "result.json").read_text())["epochs"]
    single_epochs = json.loads((tmp_path / "single" / "result.json").read_text())["epochs"]
    assert [m["steps"] for m in chief_epochs] == [m["steps"] for m in single_epochs]  # one global batch a step
    for multi, single in zip(chief_epochs, single_epochs, strict=True):
        assert multi["loss"] == pytest.approx(single["loss"], rel=1e-5)
        assert multi["buyer_grad_norm_mean"] == pytest.approx(single["buyer_grad_norm_mean"], rel=1e-4)
    assert EPOCH_LINE.findall(logs["worker"]) == EPOCH_LINE.findall(logs["chief"])  # the same, all-reduced epochs
