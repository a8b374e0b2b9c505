"""A sweep: one experiment per point of a grid over spec fields, each with its own spec and content hash.

The grid comes from a config's `sweep:` block (`{grid: {training.learning_rate: [0.3, 0.1]}, max_points: 64}`)
and from `--grid key=v1,v2` options, which replace the block's value for the same key. The block is removed
before a point's spec is built, so it never reaches a point's spec or hash. Every point is checked here,
before anything is stored or run: an unknown key, a value of the wrong type, an empty grid and a grid of
more than `max_points` points raise `SweepError`, naming the key. Pure: no Prefect, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainer.errors import ExpectedError
from trainer.spec import (
    MAX_NESTING,
    ExperimentSpec,
    SpecError,
    apply_overrides,
    load_spec,
    load_yaml,
    nesting,
    parse_config_text,
    read_config_text,
)

DEFAULT_MAX_POINTS = 64
SWEEP_KEY = "sweep"


class SweepError(ExpectedError):
    """A sweep that cannot run as given (the CLI exits 2): the message names the key or value at fault."""

    exit_code = 2


class SweepBlock(BaseModel):
    """The `sweep:` block of a config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: dict[str, list[Any]] = {}
    max_points: int = Field(DEFAULT_MAX_POINTS, ge=1)


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its experiment's name, the grid values it sets and its parsed spec."""

    name: str
    values: dict[str, Any]
    config: dict  # the raw config (base overrides applied, named for the point)
    overrides: list[str]  # `key=value` per grid key, applied to `config`
    spec: ExperimentSpec

    @property
    def config_hash(self) -> str:
        return self.spec.content_hash()


@dataclass(frozen=True)
class Sweep:
    """A whole sweep: its name (the config's), its grid and its points in grid order."""

    name: str
    grid: dict[str, list[Any]]
    points: list[SweepPoint]

    @property
    def sweep_hash(self) -> str:
        """The same name and the same points (by content hash) are the same sweep."""
        members = [self.name, *(point.config_hash for point in self.points)]
        return hashlib.sha256(json.dumps(members).encode()).hexdigest()[:16]


def parse_grid_option(option: str) -> tuple[str, list[Any]]:
    """`training.learning_rate=0.3,0.1` -> ('training.learning_rate', [0.3, 0.1]); values are safe YAML, so
    `model.buyer_layers=[{units: 8}],[{units: 16}]` gives two lists."""
    key, sep, text = option.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepError(f"--grid {option!r}: expected key.path=value1,value2,...")
    too_deep = SweepError(f"--grid {key}: values nested more than {MAX_NESTING} levels deep")
    try:
        values = load_yaml(f"[{text}]")
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepError(f"--grid {key}: cannot read the values {text!r}: {problem}") from None
    except RecursionError:
        raise too_deep from None
    if nesting(values) + key.count(".") > MAX_NESTING:  # the list of values stands for the key's last part
        raise too_deep
    return key, values


def spec_field_exists(path: str) -> bool:
    """True when the dotted `path` names a field of ExperimentSpec (descending only into nested sections)."""
    model: type[BaseModel] | None = ExperimentSpec
    for part in path.split("."):
        if model is None or part not in model.model_fields:
            return False
        model = _section(model.model_fields[part].annotation)
    return True


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (`SplitSpec`, `X | None`), or None for a leaf (a number, a list, ...)."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    models = [t for t in options if isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if models else None


def _sweep_block(raw: dict) -> SweepBlock:
    try:
        return SweepBlock.model_validate(raw.get(SWEEP_KEY) or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in (SWEEP_KEY, *error["loc"]))
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise SweepError(f"{where}: {message}") from None


def check_grid(grid: dict[str, list[Any]], max_points: int) -> None:
    """Every key a spec field (not `name`: the sweep names its points), every value list non-empty and
    without repeats, at most `max_points` points."""
    if not grid:
        raise SweepError("empty grid: give --grid key=v1,v2 or a sweep: {grid: ...} block")
    for key, values in grid.items():
        if key == "name":
            raise SweepError("grid key 'name': the sweep names its points; sweep over another field")
        if not spec_field_exists(key):
            raise SweepError(f"grid key {key!r} is not a spec field")
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid key {key!r} has no values")
        words = [value_word(value) for value in values]
        repeated = next((word for word in words if words.count(word) > 1), None)
        if repeated is not None:
            raise SweepError(f"grid key {key!r} repeats the value {repeated}")
    points = 1
    for values in grid.values():
        points *= len(values)
    if points > max_points:
        raise SweepError(f"the grid has {points} points, more than the maximum of {max_points} "
                         "(sweep.max_points or --max-points)")


def value_word(value: Any) -> str:
    """A grid value as a point's name shows it: 0.03, adam, true, [{"units":8}]."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _labels(keys: list[str]) -> dict[str, str]:
    """Each key's last segment, or the whole key where two keys share a last segment."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: tail if last.count(tail) == 1 else key for key, tail in zip(keys, last)}


def point_name(base: str, values: dict[str, Any]) -> str:
    """`<config name>-<key>=<value>-...`, e.g. `movielens-learning_rate=0.1-temperature=0.05`."""
    labels = _labels(list(values))
    return "-".join([base, *(f"{labels[key]}={value_word(value)}" for key, value in values.items())])


def expand(raw: dict, grid: dict[str, list[Any]]) -> list[SweepPoint]:
    """One point per combination of grid values, in grid order, each spec built and checked."""
    base = raw.get("name")
    points = []
    for combination in itertools.product(*grid.values()):
        values = dict(zip(grid, combination))
        config = {**raw, "name": point_name(str(base), values)}
        overrides = [f"{key}={json.dumps(value)}" for key, value in values.items()]
        points.append(SweepPoint(config["name"], values, config, overrides, _point_spec(config, values, overrides)))
    return points


def _point_spec(config: dict, values: dict[str, Any], overrides: list[str]) -> ExperimentSpec:
    try:
        return load_spec(config, overrides)
    except SpecError as exc:
        field, message = exc.problems[0]
        key = next((k for k in values if field == k or field.startswith((f"{k}.", f"{k}["))), None)
        if key is None:
            raise SweepError(f"{exc.source}: {field}: {message}") from None
        message = message.split(" (from --set ")[0]
        raise SweepError(f"grid key {key!r}: value {value_word(values[key])} is not valid: {message}") from None


def load_sweep(source: str | Path | dict, overrides: list[str] | None = None, grid_options: list[str] | None = None,
               max_points: int | None = None) -> Sweep:
    """The sweep of a config (path, URI or mapping): its `sweep:` block's grid, replaced key by key by
    `grid_options`, the base `--set` overrides applied to every point. SpecError when the base config cannot
    be read; SweepError for the grid."""
    if isinstance(source, dict):
        raw, label = dict(source), "<config>"
    else:
        label = str(source)
        raw = parse_config_text(read_config_text(label), label)
    block = _sweep_block(raw)
    raw.pop(SWEEP_KEY, None)
    grid = dict(block.grid)
    seen: set[str] = set()
    for option in grid_options or []:
        key, values = parse_grid_option(option)
        if key in seen:
            raise SweepError(f"--grid {key} is given twice")
        seen.add(key)
        grid[key] = values
    check_grid(grid, max_points or block.max_points)
    if overrides:
        raw = apply_overrides(raw, overrides)
    if not raw.get("name"):
        load_spec(raw)  # the base config's own problems first (a missing name among them)
    return Sweep(str(raw["name"]), grid, expand(raw, grid))


def has_sweep_block(source: str | Path) -> bool:
    """True when the config at `source` carries a `sweep:` block (an unreadable one: False)."""
    try:
        return SWEEP_KEY in parse_config_text(read_config_text(str(source)), str(source))
    except SpecError:
        return False
