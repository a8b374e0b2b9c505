"""MovieLens 100K, read from the copy that ships inside the recbole wheel.

The files are located without importing recbole (whose `__init__` imports torch) and are never
copied into this repository. `ratings` is every rating joined with its user's and movie's
features; `items` is the movie catalogue. Ids are strings, `genres` and `movie_title` are
whitespace-separated tokens, `release_year` is a nullable integer (one movie has none).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from pathlib import Path

import pandas as pd

TABLES: dict[str, list[str]] = {
    "ratings": [
        "user_id", "item_id", "rating", "timestamp", "age", "gender", "occupation", "zip_code",
        "movie_title", "release_year", "genres",
    ],
    "items": ["item_id", "movie_title", "release_year", "genres"],
}  # fmt: skip

INSTALL_HINT = "MovieLens 100K ships inside the recbole wheel: pip install --no-deps recbole==1.2.1"
_RENAMES = {"class": "genres"}  # recbole's name for the genres field


def data_dir() -> Path:
    """The ml-100k folder inside the installed recbole package (found without importing it)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(INSTALL_HINT)
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def _read_atomic(path: Path) -> pd.DataFrame:
    """Read a recbole atomic file: tab-separated, headers like `user_id:token`, all read as text."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {INSTALL_HINT}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    names = [header.split(":", 1)[0] for header in frame.columns]
    return frame.set_axis([_RENAMES.get(name, name) for name in names], axis=1)


@functools.lru_cache(maxsize=2)
def _tables(directory: Path) -> dict[str, pd.DataFrame]:
    items = _read_atomic(directory / "ml-100k.item")
    items["release_year"] = pd.to_numeric(items["release_year"], errors="coerce").astype("Int64")
    users = _read_atomic(directory / "ml-100k.user")
    users["age"] = users["age"].astype("int64")
    ratings = _read_atomic(directory / "ml-100k.inter")
    ratings["rating"] = ratings["rating"].astype("float64")
    ratings["timestamp"] = ratings["timestamp"].astype("float64").astype("int64")
    ratings = ratings.merge(users, on="user_id", how="left", validate="many_to_one")
    ratings = ratings.merge(items, on="item_id", how="left", validate="many_to_one")
    return {"ratings": ratings[TABLES["ratings"]], "items": items[TABLES["items"]]}


def parse_params(params: dict[str, str]) -> dict[str, str]:
    """MovieLens takes no parameters: ValueError naming any given."""
    if params:
        raise ValueError(f"movielens100k takes no parameters, got {', '.join(sorted(params))}")
    return {}


def load(table: str, **params: str) -> pd.DataFrame:
    """One table as a fresh DataFrame (parsed once per process, then served from a cache)."""
    parse_params(params)
    return _tables(data_dir())[table].copy()
