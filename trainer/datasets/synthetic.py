"""Synthetic retail purchases with planted structure that a two-tower model can learn.

Customers and products belong to latent clusters. A purchase stays inside the customer's
cluster with probability `affinity` (default 0.8; otherwise any product, uniformly); inside a cluster,
popularity follows a Zipf law over a random permutation of that cluster's products, so global
popularity is a weak predictor while knowing a customer's cluster is a strong one. Features
carry the signal: a product's category and description tokens come mostly from its cluster's
vocabulary, its price level from its cluster; a customer's region, age and value correlate
with theirs. Timestamps are spread uniformly over one year. Everything is drawn from one
seeded generator, so the same parameters always give the same data.

Two more parameters make it retail-like (both off by default, which keeps the data above unchanged):
`skew` (a Zipf exponent) weights every product by a global popularity rank as well, so a few
products sell across all clusters and the catalogue has a long tail; `repeat` (a share, 0-0.9) makes
that share of a customer's purchases (after their first) a re-purchase of a product they bought
before, uniformly among their earlier purchases, as groceries and consumables are bought again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

TABLES: dict[str, list[str]] = {
    "transactions": [
        "customer_id", "customer_age", "region", "cust_value", "product_id", "category", "price",
        "description", "timestamp",
    ],
    "products": ["product_id", "category", "price", "description"],
}  # fmt: skip

DEFAULTS: dict[str, int | float] = {
    "customers": 2000, "products": 400, "transactions": 40000, "clusters": 8, "seed": 7, "affinity": 0.8,
    "repeat": 0.0, "skew": 0.0,
}  # fmt: skip
# (lowest, highest) per parameter: a config must not ask a worker for more memory than it has
LIMITS: dict[str, tuple[float, float]] = {
    "customers": (1, 1_000_000), "products": (1, 1_000_000), "transactions": (1, 20_000_000),
    "clusters": (1, 10_000), "seed": (0, 2**32 - 1), "affinity": (0.0, 1.0), "repeat": (0.0, 0.9),
    "skew": (0.0, 3.0),
}  # fmt: skip

ZIPF_EXPONENT = 1.0  # within-cluster popularity: weight of rank r is 1 / r**ZIPF_EXPONENT
CATEGORIES_PER_CLUSTER = 3
CATEGORY_NOISE = 0.1  # share of products whose category comes from another cluster
REGION_NOISE = 0.3  # share of customers living outside their cluster's home region
CLUSTER_TOKENS = 12  # description vocabulary per cluster
DESCRIPTION_CLUSTER_WORDS = 3  # words from the cluster's vocabulary in each description
DESCRIPTION_COMMON_WORDS = 2  # words from the shared vocabulary
COMMON_TOKENS = ("classic", "new", "premium", "basic", "eco", "pack", "set", "mini", "max", "original")
YEAR_START = 1_704_067_200  # 2024-01-01T00:00:00Z
YEAR_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True)
class RetailData:
    """Generated tables plus the latent clusters behind them (for checking the planted structure)."""

    transactions: pd.DataFrame
    products: pd.DataFrame
    customer_cluster: np.ndarray  # cluster of customer i (whose id is customer_ids[i])
    product_cluster: np.ndarray  # cluster of product j (whose id is product_ids[j])
    customer_ids: np.ndarray
    product_ids: np.ndarray


def parse_params(params: dict[str, str | int | float]) -> dict[str, int | float]:
    """URI query parameters (strings) to numbers (of their default's type) within LIMITS; ValueError
    names every bad one at once."""
    problems = []
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    values = dict(DEFAULTS)
    for name in [name for name in DEFAULTS if name in params]:
        kind = type(DEFAULTS[name])
        try:
            value = kind(params[name])
        except (TypeError, ValueError):
            problems.append(f"parameter {name} must be {'an integer' if kind is int else 'a number'}, got {params[name]!r}")
            continue
        if not np.isfinite(value):
            problems.append(f"parameter {name} must be a finite number, got {params[name]!r}")
            continue
        low, high = LIMITS[name]
        if value < low or value > high:
            problems.append(f"parameter {name} must be {f'>= {low}' if value < low else f'<= {high}'}, got {value}")
        values[name] = value
    if not problems and values["clusters"] > min(values["customers"], values["products"]):
        problems.append(
            f"parameter clusters ({values['clusters']}) must not exceed customers ({values['customers']}) "
            f"or products ({values['products']})"
        )
    if problems:
        raise ValueError("; ".join(problems))
    return values


def _ids(prefix: str, count: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}{i:0{width}d}" for i in range(count)], dtype=object)


def _balanced_clusters(rng: np.random.Generator, count: int, clusters: int) -> np.ndarray:
    """Cluster labels as even as possible (every cluster non-empty), in random order."""
    return rng.permutation(np.arange(count) % clusters)


def _with_noise(rng: np.random.Generator, values: np.ndarray, noise: float, choices: int) -> np.ndarray:
    """Replace a `noise` share of `values` with uniform draws from range(choices)."""
    replace = rng.random(values.size) < noise
    return np.where(replace, rng.integers(choices, size=values.size), values)


def _products(rng: np.random.Generator, product_cluster: np.ndarray, clusters: int) -> pd.DataFrame:
    n = product_cluster.size
    category_index = product_cluster * CATEGORIES_PER_CLUSTER + rng.integers(CATEGORIES_PER_CLUSTER, size=n)
    category_index = _with_noise(rng, category_index, CATEGORY_NOISE, clusters * CATEGORIES_PER_CLUSTER)
    cluster_price = rng.uniform(np.log(5.0), np.log(200.0), size=clusters)
    price = np.round(np.exp(cluster_price[product_cluster] + rng.normal(0.0, 0.3, size=n)), 2)
    cluster_words = product_cluster[:, None] * CLUSTER_TOKENS + rng.integers(
        CLUSTER_TOKENS, size=(n, DESCRIPTION_CLUSTER_WORDS)
    )
    common_words = rng.integers(len(COMMON_TOKENS), size=(n, DESCRIPTION_COMMON_WORDS))
    vocabulary = _ids("w", clusters * CLUSTER_TOKENS, 3)
    words = np.concatenate([vocabulary[cluster_words], np.asarray(COMMON_TOKENS, dtype=object)[common_words]], axis=1)
    return pd.DataFrame(
        {
            "category": _ids("cat", clusters * CATEGORIES_PER_CLUSTER, 2)[category_index],
            "price": price,
            "description": [" ".join(row) for row in words],
        }
    )


def _customers(rng: np.random.Generator, customer_cluster: np.ndarray, clusters: int) -> pd.DataFrame:
    n = customer_cluster.size
    region = _with_noise(rng, customer_cluster, REGION_NOISE, clusters)
    cluster_age = rng.uniform(22.0, 65.0, size=clusters)
    age = np.clip(np.round(cluster_age[customer_cluster] + rng.normal(0.0, 6.0, size=n)), 18, 90).astype(np.int64)
    cluster_value = rng.uniform(np.log(50.0), np.log(2000.0), size=clusters)
    value = np.round(np.exp(cluster_value[customer_cluster] + rng.normal(0.0, 0.5, size=n)), 2)
    return pd.DataFrame({"customer_age": age, "region": _ids("region_", clusters, 2)[region], "cust_value": value})


def _draw(weights: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Indices into `weights` for uniform `draws` in [0, 1), each index with probability ∝ its weight."""
    cdf = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cdf, draws, side="right"), weights.size - 1)


def _purchased_products(
    rng: np.random.Generator,
    buyer_cluster: np.ndarray,
    product_cluster: np.ndarray,
    clusters: int,
    affinity: float,
    skew: float,
) -> np.ndarray:
    """Product index per purchase: with probability `affinity` in-cluster Zipf over a random
    per-cluster ranking, else any product (uniformly, or by global popularity when `skew` > 0,
    which also weights the in-cluster draw)."""
    chosen = rng.integers(product_cluster.size, size=buyer_cluster.size)
    in_cluster = rng.random(buyer_cluster.size) < affinity
    draws = rng.random(buyer_cluster.size)
    popularity = np.ones(product_cluster.size)
    if skew > 0:
        popularity[rng.permutation(product_cluster.size)] = 1.0 / np.arange(1, product_cluster.size + 1) ** skew
        anywhere = np.flatnonzero(~in_cluster)
        chosen[anywhere] = _draw(popularity, draws[anywhere])
    for cluster in range(clusters):
        ranked = rng.permutation(np.flatnonzero(product_cluster == cluster))
        weights = popularity[ranked] / np.arange(1, ranked.size + 1) ** ZIPF_EXPONENT
        rows = np.flatnonzero(in_cluster & (buyer_cluster == cluster))
        chosen[rows] = ranked[_draw(weights, draws[rows])]
    return chosen


def _with_repeats(rng: np.random.Generator, buyer: np.ndarray, product: np.ndarray, repeat: float) -> np.ndarray:
    """`product` (rows in time order) where a `repeat` share of each buyer's later purchases re-buys a
    product of one of that buyer's earlier purchases, chosen uniformly among them."""
    if repeat <= 0:
        return product
    order = np.argsort(buyer, kind="stable")  # each buyer's rows together, in time order
    sorted_buyer = buyer[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_buyer)) + 1]
    start = np.repeat(first, np.diff(np.r_[first, sorted_buyer.size]))
    position = np.arange(sorted_buyer.size) - start  # how many earlier purchases the buyer has
    again = (position > 0) & (rng.random(sorted_buyer.size) < repeat)
    rows = np.arange(sorted_buyer.size)
    origin = np.where(again, start + np.floor(rng.random(sorted_buyer.size) * position).astype(np.int64), rows)
    while not np.array_equal(origin, origin[origin]):  # a re-purchase of a re-purchase: follow it to the first
        origin = origin[origin]
    result = np.empty_like(product)
    result[order] = product[order][origin]
    return result


@functools.lru_cache(maxsize=8)
def _generate(
    customers: int,
    products: int,
    transactions: int,
    clusters: int,
    seed: int,
    affinity: float,
    repeat: float,
    skew: float,
) -> RetailData:
    rng = np.random.default_rng(seed)
    customer_cluster = _balanced_clusters(rng, customers, clusters)
    product_cluster = _balanced_clusters(rng, products, clusters)
    customer_ids, product_ids = _ids("c", customers, 5), _ids("p", products, 4)
    product_table = _products(rng, product_cluster, clusters)
    customer_table = _customers(rng, customer_cluster, clusters)

    activity = rng.gamma(2.0, 1.0, size=customers)
    buyer = rng.choice(customers, size=transactions, p=activity / activity.sum())
    product = _purchased_products(rng, customer_cluster[buyer], product_cluster, clusters, affinity, skew)
    timestamp = np.sort(YEAR_START + rng.integers(YEAR_SECONDS, size=transactions))
    product = _with_repeats(rng, buyer, product, repeat)

    purchases = pd.concat(
        [
            pd.DataFrame({"customer_id": customer_ids[buyer]}),
            customer_table.iloc[buyer].reset_index(drop=True),
            pd.DataFrame({"product_id": product_ids[product]}),
            product_table.iloc[product].reset_index(drop=True),
            pd.DataFrame({"timestamp": timestamp}),
        ],
        axis=1,
    )
    catalogue = pd.concat([pd.DataFrame({"product_id": product_ids}), product_table], axis=1)
    return RetailData(
        transactions=purchases[TABLES["transactions"]].astype({"customer_id": "str", "product_id": "str"}),
        products=catalogue[TABLES["products"]].astype({"product_id": "str"}),
        customer_cluster=customer_cluster,
        product_cluster=product_cluster,
        customer_ids=customer_ids,
        product_ids=product_ids,
    )


def generate(**params: str | int) -> RetailData:
    """Generate (or fetch from the in-process cache) the data for these parameters; see DEFAULTS."""
    return _generate(**parse_params(params))


def load(table: str, **params: str | int) -> pd.DataFrame:
    """One generated table as a fresh DataFrame."""
    return getattr(generate(**params), table).copy()
