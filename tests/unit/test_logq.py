"""logQ correction: the in-batch softmax corrected for how often each product is drawn as a negative."""

import math

import numpy as np
import pandas as pd
import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tf_keras

from trainer.model import build_model, build_optimizer, embed, make_dataset, model_columns
from trainer.spec import spec_from_dict

WEIGHTS = np.array([0.5, 0.2, 0.15, 0.1, 0.05])  # item i0 is bought 10x as often as i4


def _spec(logq: bool, weight: float = 1.0):
    return spec_from_dict(
        {
            "name": "tiny",
            "data": {"transactions": "memory://unused.csv"},
            "buyer_features": [{"column": "buyer", "type": "id", "embedding_dim": 4}],
            "product_features": [{"column": "item", "type": "id", "embedding_dim": 4}],
            "model": {"output_dim": 4, "logq_correction": logq, "logq_weight": weight},
            "training": {"optimizer": "adam"},
        }
    )


def _popularity_only(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every buyer picks items with the same popularity-skewed distribution: popularity is all there is."""
    rng = np.random.default_rng(seed)
    items = rng.choice(len(WEIGHTS), size=rows, p=WEIGHTS)
    return pd.DataFrame({"buyer": [f"b{b}" for b in rng.integers(0, 50, rows)], "item": [f"i{i}" for i in items]})


def _trained(logq: bool, frame: pd.DataFrame, epochs: int = 5):
    spec = _spec(logq)
    tf_keras.utils.set_random_seed(0)
    model = build_model(spec, frame)
    model.compile(optimizer=build_optimizer(spec.training, 0.05))
    model.fit(make_dataset(frame, model_columns(spec), batch_size=64, shuffle_seed=0), epochs=epochs, verbose=0)
    return model


@pytest.mark.parametrize("weight", [1.0, 2.0])
def test_sampling_probability_is_each_products_share_of_training_rows_to_the_logq_weight(weight):
    frame = pd.DataFrame({"buyer": ["b1"] * 4, "item": ["i1", "i1", "i1", "i2"]})
    model = build_model(_spec(True, weight), frame)
    shares = model.sampling_probability(tf.constant(["i1", "i2", "unseen"])).numpy()
    # shares 0.75, 0.25 and, for an unseen id, the share of one row; over the largest (a softmax cannot tell)
    assert shares == pytest.approx(np.array([1.0, 1 / 3, 1 / 3]) ** weight)


def test_the_loss_subtracts_the_logq_weight_times_log_share_from_each_logit():
    frame = _popularity_only(rows=64)
    spec = _spec(True, 1.7)
    model = build_model(spec, frame)
    batch = next(iter(make_dataset(frame, model_columns(spec), batch_size=16)))
    features = model.preprocess(batch)
    scores = tf.matmul(model.buyer(features), model.product(features), transpose_b=True).numpy()
    shares = frame["item"].value_counts(normalize=True)
    items = [item.decode() for item in batch["item"].numpy()]
    logits = scores - 1.7 * np.log(shares[items].to_numpy())[None, :]
    expected = -np.sum(np.diag(logits) - np.log(np.exp(logits).sum(axis=1)))
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_with_logq_a_model_scoring_everything_alike_still_matches_its_uniform_loss(score_everything_alike):
    frame = _popularity_only(rows=12)
    model = build_model(_spec(True), frame)
    model.compile(optimizer=build_optimizer(_spec(True).training, 0.0))
    dataset = make_dataset(frame, model_columns(_spec(True)), batch_size=4)
    model.compute_loss(next(iter(dataset)))
    score_everything_alike(model)
    logs = model.fit(dataset, epochs=1, verbose=0).history
    assert logs["uniform_gap"][0] < 1e-5
    assert logs["loss"][0] == pytest.approx(logs["uniform_loss"][0], abs=1e-5)
    assert logs["uniform_loss"][0] != pytest.approx(math.log(4), abs=1e-2)  # not the uncorrected log(batch)


def test_logq_correction_learns_popularity_that_the_plain_in_batch_softmax_cannot():
    frame = _popularity_only()
    items = pd.DataFrame({"item": [f"i{i}" for i in range(len(WEIGHTS))]})
    buyers = pd.DataFrame({"buyer": ["b0", "b1", "b2"]})
    ranks = {}
    for logq in (False, True):
        model = _trained(logq, frame)
        scores = embed(model.buyer, buyers) @ embed(model.product, items).T
        ranks[logq] = np.argsort(-scores, axis=1)
    assert (ranks[True][:, 0] == 0).all()  # every buyer's top item: the most popular
    assert (ranks[True][:, -1] == len(WEIGHTS) - 1).all()  # and its last: the least popular
    assert not (ranks[False][:, 0] == 0).all()
