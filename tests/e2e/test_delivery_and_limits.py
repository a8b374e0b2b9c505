"""Delivery is confirmed and training is bounded: `watch` keeps a config it could not deliver and sends
it once the API is back; ten submissions to one `serve --max-training 1` all succeed, one experiment per
distinct config, and never two attempts train at once."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from faults import log_text, serve_until_ready, towerflow, towerflow_env, wait_for
from tiny_configs import tiny_config

from flows.prefect_api import free_port, read_events, start_server, stop_process
from tasks import store

pytestmark = pytest.mark.slow


def test_watch_retries_a_config_the_api_did_not_take(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "watched.yaml").write_text(yaml.safe_dump(tiny_config(name="watched")))
    dead = towerflow_env(tmp_path, PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    missed = towerflow(dead, "watch", str(configs), "--once", timeout=120)
    assert missed.returncode == 1 and "Traceback" not in missed.stderr + missed.stdout
    assert "failed:" in missed.stdout and "retried on the next scan" in missed.stdout
    state = json.loads((tmp_path / "home" / "watch-state.json").read_text())
    assert state["submitted"] == {}  # not remembered as sent
    assert "watched" not in towerflow(dead, "results").stdout  # and no pending row left behind

    server = start_server(home=tmp_path / "server")
    try:
        live = towerflow_env(tmp_path, PREFECT_API_URL=server.api_url)
        delivered = towerflow(live, "watch", str(configs), "--once", timeout=120)
        assert delivered.returncode == 0, delivered.stderr
        assert "submitted:" in delivered.stdout
        wait_for("the event on the server", lambda: read_events(server.api_url, "towerflow.config.submitted"),
                 timeout_s=60)
    finally:
        server.stop()


def _training_spans(log: Path) -> dict[str, tuple[datetime, datetime]]:
    """Per attempt task run: from 'training slot acquired' to 'releasing the training slot', off the log."""
    spans: dict[str, list[datetime]] = {}
    for line in log_text(log).splitlines():
        found = re.match(r"(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| Task run '([^']+ / attempt \d+)[^']*' - (.*)", line)
        if not found:
            continue
        when, run, message = datetime.strptime(found.group(1), "%H:%M:%S.%f"), found.group(2), found.group(3)
        if "training slot acquired" in message or "releasing the training slot" in message:
            spans.setdefault(run, []).append(when)
    return {run: (times[0], times[-1]) for run, times in spans.items()}


def test_ten_submissions_under_one_training_slot_all_succeed_one_at_a_time(tmp_path, monkeypatch):
    env = towerflow_env(tmp_path)
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", env["TOWERFLOW_DATABASE_URL"])
    log = tmp_path / "serve.log"
    configs = []
    for number in range(10):
        path = tmp_path / f"c{number}.yaml"
        path.write_text(yaml.safe_dump(tiny_config(name=f"c{number}", training__seed=number)))
        configs.append(str(path))
    serve, _ = serve_until_ready(env, log, "--max-training", "1")
    try:
        for config in [*configs, configs[0]]:  # the first one twice: a re-delivered submission
            assert towerflow(env, "submit", config).returncode == 0
        wait_for("all ten to end", lambda: len(store.list_experiments()) == 10 and not store.unfinished_experiments(),
                 timeout_s=900, every_s=2)
    finally:
        stop_process(serve)
    experiments = store.list_experiments()
    assert sorted(e.name for e in experiments) == sorted(f"c{n}" for n in range(10))
    assert all(e.status == "succeeded" for e in experiments), [(e.name, e.status, e.message) for e in experiments]
    spans = sorted(_training_spans(log).values())
    assert len(spans) == 10
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two attempts trained at once"
