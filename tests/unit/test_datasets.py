"""Built-in datasets: MovieLens 100K from the recbole wheel, and the synthetic retail generator."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from trainer.data import DataError, load_table
from trainer.datasets import builtin_columns, is_builtin, load_builtin, movielens100k, synthetic

SMALL = "customers=200&products=50&transactions=3000&clusters=5"


# --- MovieLens 100K ------------------------------------------------------------------------


def test_movielens_ratings_have_every_rating_user_and_item():
    ratings = load_builtin("movielens100k://ratings")
    assert len(ratings) == 100_000
    assert ratings["user_id"].nunique() == 943
    assert ratings["item_id"].nunique() == 1682
    assert list(ratings.columns) == movielens100k.TABLES["ratings"]


def test_movielens_items_are_the_catalogue():
    items = load_builtin("movielens100k://items")
    assert len(items) == 1682 and items["item_id"].is_unique
    assert list(items.columns) == movielens100k.TABLES["items"]


def test_movielens_ratings_carry_their_user_and_item_features():
    ratings = load_builtin("movielens100k://ratings")
    items = load_builtin("movielens100k://items")
    assert ratings[["user_id", "age", "gender", "occupation", "zip_code"]].drop_duplicates().shape[0] == 943
    assert ratings[movielens100k.TABLES["items"]].isna().sum().sum() == ratings["release_year"].isna().sum()
    joined = ratings[movielens100k.TABLES["items"]].drop_duplicates("item_id").merge(items, on="item_id")
    for column in ("movie_title", "genres"):
        assert (joined[f"{column}_x"] == joined[f"{column}_y"]).all()
    assert set(ratings["gender"]) == {"M", "F"}
    assert pd.api.types.is_integer_dtype(ratings["age"]) and ratings["age"].between(1, 100).all()
    assert set(ratings["rating"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    genres = {token for value in items["genres"] for token in value.split()}
    assert {"Action", "Comedy", "Drama", "Film-Noir", "Sci-Fi"} <= genres and "class" not in genres


def test_movielens_loads_without_importing_recbole_or_torch():
    load_builtin("movielens100k://items")
    assert "recbole" not in sys.modules
    assert "torch" not in sys.modules


def test_movielens_frames_are_fresh_copies():
    first = load_builtin("movielens100k://items")
    first.loc[0, "movie_title"] = "changed"
    assert load_builtin("movielens100k://items").loc[0, "movie_title"] != "changed"


def test_movielens_without_recbole_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(movielens100k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps recbole==1.2.1"):
        movielens100k.load("ratings")
    with pytest.raises(DataError, match=r"movielens100k://ratings: .*recbole==1\.2\.1"):
        load_table("movielens100k://ratings")


@pytest.mark.parametrize(
    "uri",
    [
        "movielens100k://ratings",
        "movielens100k://items",
        f"synthetic-retail://transactions?{SMALL}",
        f"synthetic-retail://products?{SMALL}",
    ],
)
def test_builtin_columns_match_the_loaded_table(uri):
    assert is_builtin(uri)
    assert builtin_columns(uri) == list(load_builtin(uri).columns)


def test_unknown_builtin_table_lists_the_known_ones():
    with pytest.raises(ValueError, match="movielens100k://ratings"):
        builtin_columns("movielens100k://users")


# --- synthetic retail ----------------------------------------------------------------------


def _fresh(**params) -> synthetic.RetailData:
    synthetic._generate.cache_clear()
    return synthetic.generate(**params)


def test_synthetic_is_deterministic_by_seed():
    params = {"customers": 200, "products": 50, "transactions": 3000, "clusters": 5}
    first, again = _fresh(seed=3, **params), _fresh(seed=3, **params)
    pd.testing.assert_frame_equal(first.transactions, again.transactions)
    pd.testing.assert_frame_equal(first.products, again.products)
    other = _fresh(seed=4, **params)
    assert not first.transactions["product_id"].equals(other.transactions["product_id"])
    assert not first.products["description"].equals(other.products["description"])


def test_synthetic_parameters_come_from_the_uri():
    rows = load_builtin(f"synthetic-retail://transactions?{SMALL}&seed=1")
    products = load_builtin(f"synthetic-retail://products?{SMALL}&seed=1")
    assert len(rows) == 3000 and len(products) == 50 and products["product_id"].is_unique
    assert rows["customer_id"].nunique() <= 200 and set(rows["product_id"]) <= set(products["product_id"])
    assert rows["customer_id"].str.fullmatch(r"c\d{5}").all() and products["product_id"].str.fullmatch(r"p\d{4}").all()
    assert list(rows.columns) == synthetic.TABLES["transactions"]
    assert pd.api.types.is_numeric_dtype(rows["cust_value"]) and pd.api.types.is_numeric_dtype(rows["customer_age"])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", r"unknown parameter\(s\) colour; known: customers, products, transactions, clusters, seed, affinity, repeat, skew"),
        ("repeat=often", "parameter repeat must be a number, got 'often'"),
        ("repeat=0.95", "parameter repeat must be <= 0.9"),
        ("skew=nan", "parameter skew must be a finite number"),
        ("customers=many", "parameter customers must be an integer, got 'many'"),
        ("products=0", "parameter products must be >= 1"),
        ("products=4&clusters=5", r"parameter clusters \(5\) must not exceed"),
    ],
)
def test_synthetic_rejects_bad_parameters(query, message):
    with pytest.raises(ValueError, match=message):
        load_builtin(f"synthetic-retail://transactions?{query}")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("customers=abc&bogus=1", ["unknown parameter(s) bogus", "parameter customers must be an integer, got 'abc'"]),
        ("customers=", ["parameter customers must be an integer, got ''"]),
        ("transactions=1000000000", ["parameter transactions must be <= 20000000"]),
        ("seed=-1&products=0", ["parameter products must be >= 1", "parameter seed must be >= 0"]),
    ],
)
def test_builtin_parameters_are_checked_without_generating_anything(monkeypatch, query, named):
    monkeypatch.setattr(synthetic, "_generate", None)  # a check that generated data would fail here
    uri = f"synthetic-retail://transactions?{query}"
    with pytest.raises(ValueError) as excinfo:
        builtin_columns(uri)
    assert str(excinfo.value).startswith(f"{uri}: ")
    for part in named:
        assert part in str(excinfo.value)


def test_movielens_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match=r"movielens100k://ratings\?size=big: movielens100k takes no parameters, got size"):
        builtin_columns("movielens100k://ratings?size=big")


def test_synthetic_transactions_repeat_their_product_rows():
    data = synthetic.generate(customers=200, products=50, transactions=3000, clusters=5)
    merged = data.transactions.merge(data.products, on="product_id", suffixes=("", "_catalogue"))
    assert len(merged) == 3000
    for column in ("category", "price", "description"):
        assert (merged[column] == merged[f"{column}_catalogue"]).all()


def test_synthetic_timestamps_span_a_year_in_order():
    timestamps = synthetic.generate(customers=200, products=50, transactions=3000, clusters=5).transactions["timestamp"]
    assert timestamps.is_monotonic_increasing
    assert timestamps.max() - timestamps.min() > 300 * 24 * 3600
    assert timestamps.max() - timestamps.min() <= 366 * 24 * 3600


def _clusters(data: synthetic.RetailData) -> tuple[np.ndarray, np.ndarray]:
    """The latent cluster of each transaction's customer and product."""
    customer = pd.Series(data.customer_cluster, index=data.customer_ids)
    product = pd.Series(data.product_cluster, index=data.product_ids)
    return (
        customer.loc[data.transactions["customer_id"]].to_numpy(),
        product.loc[data.transactions["product_id"]].to_numpy(),
    )


def test_synthetic_purchases_stay_mostly_inside_the_customers_cluster():
    data = synthetic.generate(customers=200, products=50, transactions=3000, clusters=5, seed=11)
    customer_cluster, product_cluster = _clusters(data)
    in_cluster = np.mean(customer_cluster == product_cluster)
    affinity = synthetic.DEFAULTS["affinity"]
    expected = affinity + (1 - affinity) / 5
    assert abs(in_cluster - expected) < 0.03


def _purity(labels: pd.Series, clusters: np.ndarray) -> float:
    """Share of items whose cluster is the most common cluster among items with the same label."""
    frame = pd.DataFrame({"label": labels.to_numpy(), "cluster": clusters})
    majority = frame.groupby("label")["cluster"].agg(lambda values: values.value_counts().iloc[0])
    return majority.sum() / len(frame)


def test_synthetic_features_carry_the_clusters():
    data = synthetic.generate()
    assert _purity(data.products["category"], data.product_cluster) > 0.85
    first_words = data.products["description"].str.split().str[0]
    assert _purity(first_words, data.product_cluster) == 1.0
    customers = data.transactions.drop_duplicates("customer_id").set_index("customer_id")
    cluster = pd.Series(data.customer_cluster, index=data.customer_ids).loc[customers.index].to_numpy()
    assert _purity(customers["region"], cluster) > 0.6
    age_by_cluster = pd.Series(customers["customer_age"].to_numpy()).groupby(cluster).mean()
    assert age_by_cluster.max() - age_by_cluster.min() > 10


def test_cluster_aware_popularity_beats_global_popularity_by_a_wide_margin():
    data = synthetic.generate()  # the defaults the example configs use
    customer_cluster, product_cluster = _clusters(data)
    product_index = pd.Series(np.arange(len(data.product_ids)), index=data.product_ids)
    bought = product_index.loc[data.transactions["product_id"]].to_numpy()
    test = np.random.default_rng(0).random(len(bought)) < 0.2
    counts = np.zeros((synthetic.DEFAULTS["clusters"], len(data.product_ids)))
    np.add.at(counts, (customer_cluster[~test], bought[~test]), 1)

    global_top = np.argsort(-counts.sum(axis=0), kind="stable")[:10]
    cluster_top = np.argsort(-counts, axis=1, kind="stable")[:, :10]
    global_recall = np.isin(bought[test], global_top).mean()
    cluster_recall = (cluster_top[customer_cluster[test]] == bought[test][:, None]).any(axis=1).mean()
    assert cluster_recall > 2 * global_recall
    assert cluster_recall > 0.4


def _repeat_share(rows: pd.DataFrame) -> float:
    """Share of purchases re-buying a product the same customer bought earlier."""
    return float(rows.sort_values("timestamp", kind="stable").duplicated(["customer_id", "product_id"]).mean())


def test_repeat_makes_that_share_of_later_purchases_re_purchases():
    query = "customers=200&products=2000&transactions=3000&clusters=5&seed=1"
    plain = load_builtin(f"synthetic-retail://transactions?{query}")
    repeats = load_builtin(f"synthetic-retail://transactions?{query}&repeat=0.5")
    # without repeats a customer re-buys only by chance; with repeat=0.5 at least half of the later purchases do
    later = 1 - repeats["customer_id"].nunique() / len(repeats)
    assert _repeat_share(repeats) >= 0.5 * later > _repeat_share(plain) + 0.2
    assert repeats["customer_id"].equals(plain["customer_id"]) and repeats["timestamp"].equals(plain["timestamp"])


def test_skew_gives_a_long_popularity_tail():
    def top_share(query: str) -> float:
        counts = load_builtin(f"synthetic-retail://transactions?{query}")["product_id"].value_counts()
        return float(counts.iloc[: len(counts) // 10].sum() / counts.sum())

    base = "customers=500&products=400&transactions=20000&clusters=4"
    assert top_share(f"{base}&skew=1.5") > top_share(base) + 0.15  # the top tenth of products sells far more


def test_default_repeat_and_skew_leave_the_data_as_it_was():
    explicit = load_builtin(f"synthetic-retail://transactions?{SMALL}&seed=1&repeat=0&skew=0")
    pd.testing.assert_frame_equal(explicit, load_builtin(f"synthetic-retail://transactions?{SMALL}&seed=1"))
