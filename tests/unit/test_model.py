"""The two-tower model: preprocessing fitted on training data only, tower layers, optimizer whitelist."""

import math

import numpy as np
import pandas as pd
import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tf_keras

from trainer.model import build_model, build_optimizer, feature_encoder, make_dataset, model_columns, tower_layers
from trainer.spec import FeatureSpec, LayerSpec, TrainingSpec, spec_from_dict
from trainer.stats import TrainStats

TRAIN = pd.DataFrame(
    {
        "buyer": ["b1", "b2", "b2", "b3"],
        "age": np.array([20.0, 30.0, 30.0, 40.0], dtype=np.float32),
        "item": ["i1", "i2", "i1", "i3"],
        "words": ["red shoe", "blue shoe", "red", ""],
    }
)
STATS = TrainStats.of(TRAIN, {"buyer": "id", "age": "numeric", "item": "id", "words": "text"})


def _spec(**model):
    return spec_from_dict(
        {
            "name": "tiny",
            "data": {"transactions": "memory://unused.csv"},
            "buyer_features": [{"column": "buyer", "type": "id", "embedding_dim": 4}, {"column": "age", "type": "numeric"}],
            "product_features": [{"column": "item", "type": "id", "embedding_dim": 4}, {"column": "words", "type": "text", "embedding_dim": 3}],
            "model": {"output_dim": 8, **model},
        }
    )


def test_id_vocabulary_comes_from_training_rows_and_unseen_ids_share_one_bucket():
    encoder = feature_encoder(FeatureSpec(column="item", type="id", embedding_dim=4), STATS)
    assert encoder.lookup.get_vocabulary() == ["[UNK]", "i1", "i2", "i3"]  # most frequent first
    seen, unseen_a, unseen_b = encoder(tf.constant(["i2", "test-only-1", "test-only-2"])).numpy()
    np.testing.assert_array_equal(unseen_a, unseen_b)
    assert not np.allclose(seen, unseen_a)


def test_hashed_ids_need_no_vocabulary_and_keep_unseen_ids_apart():
    encoder = feature_encoder(FeatureSpec(column="item", type="id", embedding_dim=4, hash_buckets=1000), TrainStats(0))
    assert encoder.embedding.input_dim == 1000  # fitted on no rows at all
    ids = encoder.preprocess(tf.constant(["i1", "i1", "test-only-1", "test-only-2"])).numpy()
    assert ids[0] == ids[1] and len(set(ids[1:])) == 3 and ((0 <= ids) & (ids < 1000)).all()
    vectors = encoder(tf.constant(["test-only-1", "test-only-2"])).numpy()
    assert not np.allclose(*vectors)  # a vocabulary would have given both the one OOV row


def test_a_vocabulary_file_replaces_the_training_rows_counts(tmp_path):
    path = tmp_path / "items.txt"
    path.write_text("i3\n\ni9\ni3\n i1 \n")  # blank lines skipped, repeats kept once, spaces stripped
    encoder = feature_encoder(FeatureSpec(column="item", type="id", embedding_dim=4, vocabulary=str(path)), STATS)
    assert encoder.lookup.get_vocabulary() == ["[UNK]", "i3", "i9", "i1"]  # file order; i2 is out of it
    words = tmp_path / "words.txt"
    words.write_text("shoe\nred\n")
    text = feature_encoder(FeatureSpec(column="words", type="text", embedding_dim=3, vocabulary=str(words)), STATS)
    np.testing.assert_array_equal(text.preprocess(tf.constant(["red blue shoe"])).numpy(), [[3, 1, 2]])


def test_numeric_is_standardized_with_training_statistics_and_missing_becomes_the_mean():
    encoder = feature_encoder(FeatureSpec(column="age", type="numeric"), STATS)
    mean, std = TRAIN["age"].mean(), TRAIN["age"].std(ddof=0)
    out = encoder(tf.constant([30.0, 40.0, math.nan, 1000.0])).numpy()[:, 0]
    np.testing.assert_allclose(out, [0.0, (40 - mean) / std, 0.0, (1000 - mean) / std], rtol=1e-5)


def test_text_is_the_masked_mean_of_token_embeddings():
    encoder = feature_encoder(FeatureSpec(column="words", type="text", embedding_dim=3), STATS)
    red, shoe, red_shoe, empty = encoder(tf.constant(["red", "shoe", "red shoe", ""])).numpy()
    np.testing.assert_allclose(red_shoe, (red + shoe) / 2, rtol=1e-6)
    np.testing.assert_array_equal(empty, np.zeros(3))
    alone = encoder(tf.constant(["red"])).numpy()[0]  # no padding in this batch
    np.testing.assert_allclose(alone, red, rtol=1e-6)


def test_dense_layers_use_relu_except_the_last_which_is_linear_unless_told():
    layers = tower_layers(
        [LayerSpec(units=16), LayerSpec(type="dropout", rate=0.5), LayerSpec(units=8), LayerSpec()], 4, "buyer"
    )
    assert [type(layer).__name__ for layer in layers] == ["Dense", "Dropout", "Dense", "Dense"]
    assert [layer.activation.__name__ for layer in layers if hasattr(layer, "units")] == ["relu", "relu", "linear"]
    assert layers[-1].units == 4  # units omitted -> output_dim
    explicit = tower_layers([LayerSpec(units=8, activation="tanh")], 8, "product")
    assert explicit[0].activation.__name__ == "tanh"
    assert tower_layers([], 6, "product")[0].units == 6  # no dense layer -> Dense(output_dim)


def test_model_trains_on_a_frame_and_rejects_towers_that_cannot_be_dotted():
    spec = _spec(buyer_layers=[{"units": 8}], product_layers=[{"units": 16}, {"units": 8}])
    model = build_model(spec, TRAIN)
    batch = next(iter(make_dataset(TRAIN, model_columns(spec), batch_size=4)))
    assert set(batch) == {"buyer", "age", "item", "words"} and batch["age"].dtype == tf.float32
    assert float(model.compute_loss(batch)) > 0
    with pytest.raises(ValueError, match="buyer_layers end in 8 units but model.product_layers in 16"):
        build_model(_spec(buyer_layers=[{"units": 8}], product_layers=[{"units": 16}]), TRAIN)


def test_optimizer_comes_from_the_whitelist_with_the_spec_clipping_and_weight_decay():
    adagrad = build_optimizer(TrainingSpec(optimizer="Adagrad", clipnorm=0.5), 0.2)
    assert type(adagrad).__name__ == "Adagrad" and adagrad.clipnorm == 0.5 and adagrad.global_clipnorm is None
    assert math.isclose(float(adagrad.learning_rate), 0.2, rel_tol=1e-6)
    sgd = build_optimizer(TrainingSpec(optimizer="sgd", clipnorm=None, global_clipnorm=2.0), 0.1)
    assert sgd.global_clipnorm == 2.0 and sgd.clipnorm is None and sgd.weight_decay is None
    adam = build_optimizer(TrainingSpec(optimizer="adam", weight_decay=0.05), 0.01)
    assert adam.weight_decay == 0.05
    with pytest.raises(ValueError, match="training.optimizer: unknown optimizer '__import__'"):
        build_optimizer(TrainingSpec(optimizer="__import__"), 0.1)


def test_a_purchase_history_leaves_out_one_occurrence_of_the_rows_own_product():
    encoder = feature_encoder(FeatureSpec(column="bought", type="history", embedding_dim=3), STATS, "item")
    i1, i2, both_, twice = encoder(tf.constant(["i1", "i2", "i1 i2", "i1 i1"])).numpy()
    np.testing.assert_allclose(both_, (i1 + i2) / 2, rtol=1e-6)
    training = encoder(tf.constant(["i1 i2", "i1 i1", "i2", "i3"]), exclude=tf.constant(["i1", "i1", "i2", "i1"])).numpy()
    np.testing.assert_allclose(training[0], i2, rtol=1e-6)  # its own purchase left out
    np.testing.assert_allclose(training[1], i1, rtol=1e-6)  # bought twice: the other purchase stays
    np.testing.assert_array_equal(training[2], np.zeros(3))  # nothing else bought
    assert not np.allclose(training[3], 0)  # another product is kept


def test_normalized_towers_score_cosines():
    spec = _spec(normalize=True, temperature=0.1)
    model = build_model(spec, TRAIN)
    features = next(iter(make_dataset(TRAIN, model_columns(spec), batch_size=4)))
    for tower in (model.buyer, model.product):
        np.testing.assert_allclose(np.linalg.norm(tower(features).numpy(), axis=1), 1.0, rtol=1e-5)


def test_catalogue_negatives_are_the_full_softmax_over_every_candidate():
    spec = _spec(negatives="catalogue", temperature=0.5)
    catalogue = TRAIN.drop_duplicates("item")[["item", "words"]]
    model = build_model(spec, TRAIN, catalogue)
    batch = next(iter(make_dataset(TRAIN, model_columns(spec), batch_size=4)))
    queries = model.buyer(batch).numpy()
    candidates = model.product({c: tf.constant(catalogue[c].to_numpy(dtype=object)) for c in catalogue}).numpy()
    logits = queries @ candidates.T / 0.5
    rows = [list(catalogue["item"]).index(item) for item in TRAIN["item"]]
    expected = sum(np.log(np.exp(logits[i]).sum()) - logits[i, row] for i, row in enumerate(rows))
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
    assert float(model.uniform_loss_sum(batch)) == pytest.approx(len(TRAIN) * math.log(len(catalogue)), rel=1e-6)
    assert model.sampling_probability is None  # the exact softmax needs no logQ correction


def _softmax_loss_sum(queries: np.ndarray, candidates: np.ndarray, temperature: float, rows) -> float:
    logits = queries @ candidates.T / temperature
    return float(sum(np.log(np.exp(logits[i]).sum()) - logits[i, row] for i, row in enumerate(rows)))


@pytest.mark.parametrize("negatives", ["in_batch", "catalogue"])
def test_members_are_towers_of_their_own_each_trained_on_its_own_softmax(negatives):
    towers = {"normalize": True, "temperature": 0.5, "logq_correction": False, "buyer_layers": [{"units": 8}],
              "product_layers": [{"units": 16}, {"units": 8}]}
    spec = _spec(members=3, negatives=negatives, **towers)
    catalogue = TRAIN.drop_duplicates("item")[["item", "words"]]
    model = build_model(spec, TRAIN, catalogue)
    single = build_model(_spec(negatives=negatives, **towers), TRAIN, catalogue)
    batch = next(iter(make_dataset(TRAIN, model_columns(spec), batch_size=4)))
    queries = model.buyer(batch).numpy()
    assert queries.shape == (4, 3 * single.buyer(batch).shape[1])
    assert len(model.buyer.trainable_variables) == 3 * len(single.buyer.trainable_variables)
    for tower in (model.buyer, model.product):  # one vocabulary table per feature, whatever the members
        for encoder, twin in zip(tower.encoders, tower.more_members[1][0]):
            assert getattr(twin, "lookup", twin) is getattr(encoder, "lookup", encoder) and type(twin) is type(encoder)
    if negatives == "catalogue":
        candidates = model.product({c: tf.constant(catalogue[c].to_numpy(dtype=object)) for c in catalogue}).numpy()
        rows = [list(catalogue["item"]).index(item) for item in TRAIN["item"]]
    else:
        candidates, rows = model.product(batch).numpy(), range(len(TRAIN))
    blocks = [(queries[:, m * 8 : (m + 1) * 8], candidates[:, m * 8 : (m + 1) * 8]) for m in range(3)]
    for member_queries, _ in blocks:  # each member normalized on its own
        np.testing.assert_allclose(np.linalg.norm(member_queries, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(blocks[0][0], blocks[1][0])  # initialised apart
    expected = np.mean([_softmax_loss_sum(q, c, 0.5, rows) for q, c in blocks])
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
    assert float(model.uniform_loss_sum(batch)) == pytest.approx(float(single.uniform_loss_sum(batch)), rel=1e-6)
    summed = sum(q @ c.T for q, c in blocks)  # the members' scores: one dot product of the concatenations
    np.testing.assert_allclose(queries @ candidates.T, summed, rtol=1e-5, atol=1e-6)  # atol: scores near 0


HISTORY = TRAIN.assign(bought=["i2 i1", "i2", "i1 i1 i3", ""])


def _history_spec(**model):
    spec = _spec(**model)
    history = FeatureSpec(column="bought", type="history", embedding_dim=3)
    return spec.model_copy(update={"buyer_features": [*spec.buyer_features, history]})


@pytest.mark.parametrize(
    "model_kwargs", [{}, {"logq_correction": False}, {"negatives": "catalogue"}, {"members": 2}]
)
def test_the_input_pipeline_does_the_lookups_so_the_step_sees_no_string_and_the_same_loss(model_kwargs):
    spec = _history_spec(**model_kwargs)
    model = build_model(spec, HISTORY, HISTORY.drop_duplicates("item"))
    raw = next(iter(make_dataset(HISTORY, model_columns(spec), batch_size=4)))
    looked_up = next(iter(make_dataset(HISTORY, model_columns(spec), batch_size=4, preprocess=model.preprocess)))
    assert all(tensor.dtype in (tf.int32, tf.float32) for tensor in looked_up.values())  # ids: 4 bytes a row
    assert float(model.compute_loss(looked_up)) == pytest.approx(float(model.compute_loss(raw)), rel=1e-6)
    assert float(model.uniform_loss_sum(looked_up)) == pytest.approx(float(model.uniform_loss_sum(raw)), rel=1e-6)
    np.testing.assert_allclose(model.buyer(looked_up).numpy(), model.buyer(raw).numpy(), rtol=1e-6)  # own product left out


@pytest.mark.parametrize("categorical", [False, True], ids=["plain strings", "Categoricals"])
def test_lookups_done_a_chunk_of_rows_at_a_time_equal_the_whole_frame_at_once(monkeypatch, categorical):
    spec = _history_spec()
    model = build_model(spec, HISTORY, HISTORY.drop_duplicates("item"))
    whole = next(iter(make_dataset(HISTORY, model_columns(spec), batch_size=4, preprocess=model.preprocess)))
    monkeypatch.setattr("trainer.model.PREPROCESS_CHUNK_ROWS", 1)  # the longest history is in the third chunk
    frame = HISTORY.astype(dict.fromkeys(["buyer", "item", "words", "bought"], "category")) if categorical else HISTORY
    chunked = next(iter(make_dataset(frame, model_columns(spec), batch_size=4, preprocess=model.preprocess)))
    assert chunked.keys() == whole.keys()
    for key, tensor in whole.items():
        np.testing.assert_array_equal(chunked[key].numpy(), tensor.numpy(), err_msg=key)
    assert whole["buyer/bought"].shape == (4, 3)


def test_each_epoch_is_a_new_permutation_of_every_row_and_the_seed_repeats_them():
    frame = pd.DataFrame({"x": np.arange(10, dtype=np.float32)})

    def epochs(seed, n=2):
        dataset = make_dataset(frame, {"x": tf.float32}, batch_size=4, shuffle_seed=seed)
        return [[batch["x"].numpy().tolist() for batch in dataset] for _ in range(n)]

    first, second = epochs(3)
    assert [len(batch) for batch in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(10))
    assert first != second and epochs(3) == [first, second] and epochs(4)[0] != first
    in_order = make_dataset(frame, {"x": tf.float32}, batch_size=4)
    assert sum((batch["x"].numpy().tolist() for batch in in_order), []) == list(range(10))
    assert in_order.cardinality() == 3 == make_dataset(frame, {"x": tf.float32}, 4, shuffle_seed=3).cardinality()


def test_jit_compiled_training_gives_the_losses_of_the_plain_train_step():
    spec = _history_spec()
    losses = {}
    for jit in (False, True):
        tf_keras.utils.set_random_seed(0)
        model = build_model(spec, HISTORY)
        model.compile(optimizer=build_optimizer(spec.training, 0.1), jit_compile=jit)
        dataset = make_dataset(HISTORY, model_columns(spec), batch_size=3, shuffle_seed=0, preprocess=model.preprocess)
        losses[jit] = model.fit(dataset, epochs=3, verbose=0).history["loss"]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_updates_only_the_rows_a_sparse_gradient_touches_and_keeps_a_slot_only_for_momentum(momentum):
    optimizer = build_optimizer(TrainingSpec(optimizer="sgd", clipnorm=None), 0.5)
    optimizer.momentum = momentum
    table = tf.Variable(np.ones((1000, 4), dtype=np.float32))
    optimizer.build([table])
    rows = np.array([3, 7])
    optimizer.apply_gradients([(tf.IndexedSlices(tf.ones((2, 4)), tf.constant(rows), tf.constant([1000, 4])), table)])
    expected = np.ones((1000, 4), dtype=np.float32)
    expected[rows] -= 0.5
    np.testing.assert_allclose(table.numpy(), expected)
    slots = [v for v in optimizer.variables if v.shape == table.shape]
    assert len(slots) == (1 if momentum else 0)  # no table-sized slot, and no pass over the table, without momentum
