"""`towerflow watch DIR|gs://prefix`: submit new or changed config files, by content hash.

Each scan lists the *.yaml, *.yml and *.json files under the location (recursively), parses each
and submits it when its spec's content hash was never submitted before. What was submitted is
remembered in $TOWERFLOW_HOME/watch-state.json, so an unchanged file (or a copy of one, or a file
whose edit only touched comments or key order) never resubmits, also across restarts. A broken file
is reported once per version of its bytes and skipped; a submission that fails for another reason
(the API is down) is reported and retried on the next scan.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flows.prefect_api import use_found_api
from flows.submit import NO_API, InvalidConfig, Submission, submit_config
from tasks.settings import towerflow_home
from trainer import storage
from trainer.spec import SpecError, load_spec

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
STATE_FILE = "watch-state.json"

Outcome = Literal["submitted", "unchanged", "broken", "failed"]


@dataclass(frozen=True)
class Seen:
    """What one scan did with one file."""

    uri: str
    outcome: Outcome
    detail: str = ""  # the config hash, or why the file was skipped


@dataclass
class WatchState:
    """Hashes remembered between scans: spec hash per submitted file, byte hash per broken file."""

    submitted: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, echo: Callable[[str], None] = print) -> WatchState:
        """The state kept at `path`; none when there is none, or when it is damaged (said through `echo`): every
        file is then submitted again, which is harmless, since a spec already stored is never trained twice."""
        if not storage.exists(str(path)):
            return cls()
        try:
            data = json.loads(storage.read_bytes(str(path)))
            return cls(submitted=dict(data["submitted"]), broken=dict(data["broken"]))
        except (ValueError, TypeError, KeyError) as error:
            aside = path.with_name(f"{path.name}.unreadable")
            path.replace(aside)
            echo(f"{path} cannot be read ({type(error).__name__}: {error}; kept as {aside.name}): starting with no "
                 "state; configs already submitted are submitted again and reuse their stored experiments")
            return cls()

    def save(self, path: Path) -> None:
        text = json.dumps({"submitted": self.submitted, "broken": self.broken}, indent=1, sort_keys=True)
        storage.write_bytes(str(path), text.encode())


def state_path() -> Path:
    return towerflow_home() / STATE_FILE


def list_configs(location: str) -> list[str]:
    """Config files under a folder or URL prefix, as paths or URIs that fsspec opens, sorted."""
    fs, root = storage.filesystem(location)
    with storage.failing_as_storage_error(location):
        found = [path for path in fs.find(root) if path.endswith(CONFIG_SUFFIXES)]
    remote = "://" in location
    return sorted(fs.unstrip_protocol(path) if remote else path for path in found)


def scan(location: str, submit: Callable[[str], Submission] = submit_config,
         state_file: Path | None = None) -> list[Seen]:
    """Submit every new or changed config under `location` once; never raises for a bad file. towerflow's
    own files (the state file's folder, TOWERFLOW_HOME) are never configs, though they may lie under
    `location`: the state file changes at every scan, and the stored copies of submitted configs are copies."""
    state_file = state_file or state_path()
    state = WatchState.load(state_file)
    seen = []
    for uri in list_configs(location):
        if _towerflows_own(uri, location, state_file):
            continue
        seen.append(_visit(uri, submit, state))
        state.save(state_file)  # after each file: a crash mid-scan never resubmits what was sent
    return seen


def _towerflows_own(uri: str, location: str, state_file: Path) -> bool:
    """Whether local `uri` is the state file, or lies in its folder while the watched `location` does not."""
    if "://" in location:
        return False
    path, home = Path(uri).resolve(), state_file.resolve().parent
    inside_home = path.is_relative_to(home) and not Path(location).resolve().is_relative_to(home)
    return path == state_file.resolve() or inside_home


def _visit(uri: str, submit: Callable[[str], Submission], state: WatchState) -> Seen:
    fingerprint = hashlib.sha256(storage.read_bytes(uri)).hexdigest()
    if state.broken.get(uri) == fingerprint:
        return Seen(uri, "unchanged", "still broken")
    try:
        config_hash = load_spec(uri).content_hash()
    except SpecError as error:
        state.broken[uri] = fingerprint
        return Seen(uri, "broken", str(error))
    state.broken.pop(uri, None)
    if config_hash in state.submitted.values():
        state.submitted[uri] = config_hash
        return Seen(uri, "unchanged", config_hash)
    try:
        submission = submit(uri)
    except InvalidConfig as error:
        state.broken[uri] = fingerprint
        reasons = "; ".join(f"{f.field}: {f.message}" for f in error.report.errors)
        return Seen(uri, "broken", reasons)
    except Exception as error:  # not the file's fault (e.g. the API is down): try again next scan
        return Seen(uri, "failed", f"{type(error).__name__}: {error}")
    state.submitted[uri] = submission.config_hash
    return Seen(uri, "submitted", submission.config_hash)


def watch(location: str, interval_s: float = 5.0, once: bool = False,
          submit: Callable[[str], Submission] = submit_config, echo: Callable[[str], None] = print) -> bool:
    """Scan `location` every `interval_s` seconds (once with `once`), reporting all but unchanged files;
    returns whether the last scan delivered everything it tried (a failed file is retried next scan)."""
    while True:
        delivered = True
        try:
            seen = scan(location, submit)
        except storage.StorageError as error:  # the folder or bucket itself: say so, try again next scan
            seen, delivered = [], False
            echo(f"failed: {error} (retried on the next scan)")
        for item in seen:
            if item.outcome == "failed":
                delivered = False
                echo(f"failed: {item.uri}: {item.detail} (retried on the next scan)")
            elif item.outcome != "unchanged":
                echo(f"{item.outcome}: {item.uri}: {item.detail}")
        if once:
            return delivered
        time.sleep(interval_s)


def watch_command(location: str, interval_s: float = 5.0, once: bool = False) -> int:
    """`towerflow watch`: exit 1 without a Prefect API (or, with --once, when a submission was not
    delivered), else scan until Ctrl-C and exit 0."""
    if use_found_api() is None:
        print(NO_API, file=sys.stderr)
        return 1
    try:
        return 0 if watch(location, interval_s, once) else 1
    except KeyboardInterrupt:
        return 0
