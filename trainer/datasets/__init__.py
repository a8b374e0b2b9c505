"""Built-in datasets, addressed by URI so a spec names them like any other data path.

`movielens100k://ratings` (and `://items`) read MovieLens 100K from the recbole wheel;
`synthetic-retail://transactions` (and `://products`) generate retail data with planted structure,
parameters in the query string (`?customers=2000&products=400&seed=7`).
"""

from __future__ import annotations

import importlib
from urllib.parse import parse_qsl, urlsplit

_MODULES = {"movielens100k": "trainer.datasets.movielens100k", "synthetic-retail": "trainer.datasets.synthetic"}


def is_builtin(uri: str) -> bool:
    return urlsplit(str(uri)).scheme in _MODULES


def _resolve(uri: str):
    """(module, table, parameters) of a built-in URI; ValueError naming the URI and every bad part."""
    parts = urlsplit(str(uri))
    module = importlib.import_module(_MODULES[parts.scheme])
    table = parts.netloc or parts.path.lstrip("/")
    if table not in module.TABLES:
        known = ", ".join(f"{parts.scheme}://{name}" for name in module.TABLES)
        raise ValueError(f"{uri}: unknown table {table!r}; known: {known}")
    try:
        params = module.parse_params(dict(parse_qsl(parts.query, keep_blank_values=True)))
    except ValueError as exc:
        raise ValueError(f"{uri}: {exc}") from None
    return module, table, params


def builtin_columns(uri: str) -> list[str]:
    """The columns of a built-in table, without loading or generating it; ValueError for a bad table
    or parameter (checked here, so validation catches what loading would)."""
    module, table, _ = _resolve(uri)
    return list(module.TABLES[table])


def load_builtin(uri: str):
    """Load (or generate) a built-in table as a pandas DataFrame."""
    module, table, params = _resolve(uri)
    return module.load(table, **params)
