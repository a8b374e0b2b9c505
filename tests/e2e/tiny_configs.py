"""Tiny experiment configs for end-to-end tests: synthetic retail data that trains in seconds."""

from __future__ import annotations

TINY_DATA = "synthetic-retail://{table}?customers=300&products=60&transactions=4000&clusters=4&seed=3"


def tiny_config(**changes) -> dict:
    """A small, valid config; `section__key=value` changes one value (e.g. training__epochs=3)."""
    config = {
        "name": "tiny",
        "data": {
            "transactions": TINY_DATA.format(table="transactions"),
            "products": TINY_DATA.format(table="products"),
        },
        "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 8}],
        "product_features": [
            {"column": "product_id", "type": "id", "embedding_dim": 8, "is_primary_id": True},
            {"column": "category", "type": "categorical", "embedding_dim": 4},
        ],
        "model": {"output_dim": 8, "buyer_layers": [{"units": 8}], "product_layers": [{"units": 8}]},
        "training": {"learning_rate": 0.05, "epochs": 2, "batch_size": 256},
        "evaluation": {"ks": [5, 10]},
    }
    for path, value in changes.items():
        node = config
        *parents, leaf = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config
