"""`towerflow watch --once` semantics with a fake submit: new, changed, unchanged, broken, failed."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
import yaml

from flows.submit import InvalidConfig, Submission
from flows.watch import scan, watch
from trainer.rules import Finding
from trainer.spec import load_spec
from trainer.validation import ValidationReport


def config(name: str = "watched", learning_rate: float = 0.05) -> dict:
    return {
        "name": name,
        "data": {"transactions": "synthetic-retail://transactions?customers=50&products=20&transactions=300"},
        "buyer_features": [{"column": "customer_id", "type": "id"}],
        "product_features": [{"column": "product_id", "type": "id", "is_primary_id": True}],
        "training": {"learning_rate": learning_rate, "epochs": 1},
    }


class FakeSubmit:
    """Records submitted URIs; raises what `errors` maps a URI to."""

    def __init__(self):
        self.calls: list[str] = []
        self.errors: dict[str, Exception] = {}

    def __call__(self, uri: str) -> Submission:
        self.calls.append(uri)
        if uri in self.errors:
            raise self.errors[uri]
        spec = load_spec(uri)
        return Submission(experiment_id=len(self.calls), config_hash=spec.content_hash(), name=spec.name,
                          config_uri=f"stored/{spec.content_hash()}.yaml", status="pending", created=True,
                          warnings=[])


def write(path: Path, data: dict, comment: str = "") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comment + yaml.safe_dump(data))
    return str(path)


def outcomes(seen) -> dict[str, str]:
    return {Path(item.uri).name: item.outcome for item in seen}


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


def test_new_files_are_submitted_once_and_never_again(tmp_path, state_file):
    folder = tmp_path / "configs"
    write(folder / "a.yaml", config("a"))
    (folder / "b.json").write_text(json.dumps(config("b")))
    write(folder / "nested" / "c.yml", config("c"))
    (folder / "notes.txt").write_text("not a config")
    submit = FakeSubmit()

    first = scan(str(folder), submit, state_file)
    second = scan(str(folder), submit, state_file)  # a fresh load of the state: survives restarts

    assert outcomes(first) == {"a.yaml": "submitted", "b.json": "submitted", "c.yml": "submitted"}
    assert outcomes(second) == {"a.yaml": "unchanged", "b.json": "unchanged", "c.yml": "unchanged"}
    assert sorted(Path(uri).name for uri in submit.calls) == ["a.yaml", "b.json", "c.yml"]
    assert first[0].detail == load_spec(first[0].uri).content_hash()


@pytest.mark.parametrize("damage", ['{"submitted": {"a', "[]", '{"submitted": {}}'])
def test_a_damaged_state_file_is_set_aside_and_the_configs_submitted_again(tmp_path, state_file, capsys, damage):
    folder = tmp_path / "configs"
    write(folder / "a.yaml", config("a"))
    state_file.write_text(damage)
    submit = FakeSubmit()

    assert outcomes(scan(str(folder), submit, state_file)) == {"a.yaml": "submitted"}
    assert f"{state_file} cannot be read (" in capsys.readouterr().out
    assert state_file.with_name("state.json.unreadable").read_text() == damage
    assert outcomes(scan(str(folder), submit, state_file)) == {"a.yaml": "unchanged"}  # a good state again
    assert capsys.readouterr().out == ""


def test_a_changed_spec_resubmits_but_comments_and_copies_do_not(tmp_path, state_file):
    folder = tmp_path / "configs"
    path = write(folder / "a.yaml", config("a", learning_rate=0.05))
    submit = FakeSubmit()
    scan(str(folder), submit, state_file)

    write(folder / "a.yaml", config("a", learning_rate=0.05), comment="# only a comment changed\n")
    write(folder / "copy.yaml", config("a", learning_rate=0.05))
    assert outcomes(scan(str(folder), submit, state_file)) == {"a.yaml": "unchanged", "copy.yaml": "unchanged"}

    write(folder / "a.yaml", config("a", learning_rate=0.01))
    assert outcomes(scan(str(folder), submit, state_file)) == {"a.yaml": "submitted", "copy.yaml": "unchanged"}
    assert submit.calls == [path, path]


def test_a_broken_file_is_reported_once_skipped_and_picked_up_when_fixed(tmp_path, state_file):
    folder = tmp_path / "configs"
    write(folder / "good.yaml", config("good"))
    broken = folder / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    (folder / "unknown-field.yaml").write_text(yaml.safe_dump({**config("x"), "learning_rat": 1}))
    submit = FakeSubmit()

    first = scan(str(folder), submit, state_file)
    by_name = {Path(item.uri).name: item for item in first}
    assert outcomes(first) == {"good.yaml": "submitted", "broken.yaml": "broken", "unknown-field.yaml": "broken"}
    assert "invalid YAML" in by_name["broken.yaml"].detail
    assert "learning_rat" in by_name["unknown-field.yaml"].detail
    assert [Path(uri).name for uri in submit.calls] == ["good.yaml"]

    again = scan(str(folder), submit, state_file)
    assert {item.outcome for item in again} == {"unchanged"}

    write(broken, config("fixed"))
    assert outcomes(scan(str(folder), submit, state_file))["broken.yaml"] == "submitted"


def test_towerflows_own_home_inside_the_watched_folder_holds_no_configs(tmp_path):
    """A TOWERFLOW_HOME inside the watched folder: neither its watch-state.json (before, every scan rewrote
    it and the next found it changed and broken again, forever) nor its stored config copies are scanned."""
    folder = tmp_path / "configs"
    write(folder / "good.yaml", config("good"))
    state_file = folder / "home" / "watch-state.json"
    write(folder / "home" / "artifacts" / "configs" / "0123abcd.yaml", config("good"))  # a submitted config's copy
    submit = FakeSubmit()
    assert outcomes(scan(str(folder), submit, state_file)) == {"good.yaml": "submitted"}
    assert state_file.exists()
    assert outcomes(scan(str(folder), submit, state_file)) == {"good.yaml": "unchanged"}
    assert outcomes(scan(str(folder / "home"), submit, state_file)) == {"0123abcd.yaml": "unchanged"}  # asked for


def test_validation_errors_are_broken_and_api_failures_retry(tmp_path, state_file):
    folder = tmp_path / "configs"
    invalid = write(folder / "invalid.yaml", config("invalid", learning_rate=-1.0))
    flaky = write(folder / "flaky.yaml", config("flaky"))
    submit = FakeSubmit()
    report = ValidationReport(source=invalid, findings=[
        Finding(code="non_positive", severity="error", field="training.learning_rate", message="must be > 0")])
    submit.errors = {invalid: InvalidConfig(report), flaky: ConnectionError("API down")}

    first = {Path(item.uri).name: item for item in scan(str(folder), submit, state_file)}
    assert first["invalid.yaml"].outcome == "broken"
    assert "training.learning_rate: must be > 0" in first["invalid.yaml"].detail
    assert first["flaky.yaml"].outcome == "failed" and "API down" in first["flaky.yaml"].detail

    del submit.errors[flaky]
    second = outcomes(scan(str(folder), submit, state_file))
    assert second == {"invalid.yaml": "unchanged", "flaky.yaml": "submitted"}
    assert submit.calls.count(invalid) == 1 and submit.calls.count(flaky) == 2


def test_a_url_prefix_is_scanned_through_fsspec(state_file):
    prefix = "memory://towerflow-watch-test/configs"
    with fsspec.open(f"{prefix}/a.yaml", "w") as handle:
        handle.write(yaml.safe_dump(config("remote")))
    submit = FakeSubmit()
    try:
        seen = scan(prefix, submit, state_file)
    finally:
        fsspec.filesystem("memory").rm("/towerflow-watch-test", recursive=True)
    (item,) = seen
    assert item.outcome == "submitted"
    assert item.uri.startswith("memory://") and item.uri.endswith("towerflow-watch-test/configs/a.yaml")
    assert submit.calls == [item.uri]  # a URI that fsspec opens (the fake parsed it)


def test_watch_once_reports_all_but_unchanged_files_with_state_under_towerflow_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TOWERFLOW_HOME", str(tmp_path / "home"))
    folder = tmp_path / "configs"
    write(folder / "a.yaml", config("a"))
    (folder / "bad.json").write_text("{")
    submit, lines = FakeSubmit(), []

    watch(str(folder), once=True, submit=submit, echo=lines.append)
    watch(str(folder), once=True, submit=submit, echo=lines.append)

    assert [line.split(":")[0] for line in lines] == ["submitted", "broken"]
    assert (tmp_path / "home" / "watch-state.json").exists()
    assert len(submit.calls) == 1


def test_a_location_that_cannot_be_listed_is_reported_and_retried(tmp_path, monkeypatch):
    from flows import watch as watch_module
    from trainer import storage

    reachable = storage.filesystem

    def bucket_unreachable(location):
        if location.startswith("gs://"):
            raise storage.Unreachable(f"{location}: the storage endpoint http://127.0.0.1:1 cannot be reached")
        return reachable(location)

    monkeypatch.setattr(watch_module.storage, "filesystem", bucket_unreachable)
    monkeypatch.setenv("TOWERFLOW_HOME", str(tmp_path / "home"))
    said = []
    assert watch_module.watch("gs://bucket/configs", once=True, echo=said.append) is False
    assert said == ["failed: gs://bucket/configs: the storage endpoint http://127.0.0.1:1 cannot be reached "
                    "(retried on the next scan)"]
