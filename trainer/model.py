"""The two-tower retrieval model built from an ExperimentSpec, and its tf.data input.

Preprocessing is fitted on the training frame only: vocabularies (id, categorical, text tokens)
and numeric mean/variance come from `train`, so nothing leaks from the test split. Each tower
encodes its features (id/categorical: StringLookup + Embedding; numeric: normalized, missing ->
mean; text: whitespace tokens -> StringLookup + Embedding, masked mean; history: the buyer's past
purchases as product-id tokens, the same masked mean without the row's own purchase), concatenates them and
applies the spec's layers (dense layers use relu except the tower's last dense layer, which is
linear unless an activation is given). A tower without a dense layer ends in Dense(output_dim).
With `model.normalize` both towers' outputs are L2-normalized, so a score is a cosine divided by
the temperature (which then sets how sharp the softmax can get: 0.05-0.2 is the usual range).
The loss is TFRS Retrieval (in-batch softmax, summed over the batch) with no FactorizedTopK
metric in training: top-k metrics made training 8-45x slower; recall is computed afterwards by
`trainer.evaluation` over unique candidates.

The string-to-index lookups run in the input pipeline, not in the train step: every encoder has a
`preprocess` (strings -> ids; numbers unchanged), a Tower's `preprocess` turns raw columns into the
dict its embeddings take (keys `tower/column`), and TwoTowerModel's adds each row's sampling
probability (logQ) or catalogue row. `make_dataset(..., preprocess=model.preprocess)` applies it once
to every row (token ids padded to the frame's longest row; padding is masked, so the maths is the
same), so each epoch only reshuffles row indices and gathers batches of integer and float tensors,
and the train step can be XLA-compiled (`training.jit_compile`). Towers and the model still take raw string columns (they
preprocess them first): the export serves raw strings, and a model fed raw batches trains the same.

In-batch negatives are training rows, so a product is a negative as often as it is popular: the
plain in-batch softmax learns lift, log p(product | buyer) / p(product), and ranks popular
products too low (on MovieLens 100K it loses to the popularity baseline). `model.logq_correction`
subtracts log(product's share of training rows) from every logit (Yi et al. 2019, "sampling-bias
corrected" retrieval); the model then estimates log p(product | buyer) itself. Scores that are all
alike no longer give a loss of log(batch), so the model reports its own uniform-score loss to the
collapse detector (`uniform_loss_sum`).

With `model.members` > 1 each tower holds that many encoder + layer stacks, initialised apart, and
returns their embeddings side by side; the loss is the mean of each member's own softmax loss (so the
collapse detector's uniform-score loss is unchanged), and a served score, one dot product of the
concatenations, is the sum of the members' scores: an ensemble that is still one two-tower model.

Under a distribution strategy each replica holds only its share of the global batch, and TFRS's
Retrieval task computes the softmax over the candidates it is given (tensorflow/recommenders#710):
fed one replica's candidates, each query would see global_batch/n negatives, and quality would drop
silently on a multi-GPU box. So the candidate embeddings and their sampling probabilities are
gathered from every replica (`gather_across_replicas`), with this replica's rows first (where
Retrieval's labels put each query's positive): the loss at global batch B is the single-device loss
at batch B, and so are the gradients (all_gather's gradient sums the replicas' contributions).

Gradient clipping, clipnorm vs global_clipnorm (tf-keras): `clipnorm=c` clips *each variable's*
gradient to norm c, `global_clipnorm=c` rescales *all* gradients together so their joint norm is
at most c. The Retrieval loss is a sum over the batch, so pre-clip norms grow with the batch
size and a threshold of 1.0 is active on nearly every step. Per-variable clipping then hands
every variable a gradient of the same norm, whatever its share of the signal (a bias and a 400k
weight embedding table alike), which distorts the gradient's direction; global clipping only
shortens the step and keeps the direction.

Measured (`python bench/bench_trainer.py --clipping`, adagrad, batch 1024, 5 epochs, recall@100
over 400 unique candidates; pre-clip norms were 200-500 on every step, so both clips were active):
  retail_synthetic.yaml  lr 0.05: clipnorm 0.826, global_clipnorm 0.749, none 0.832
                         lr 0.5:  clipnorm 0.808, global_clipnorm 0.815, none 0.195 (loss 7.26)
  collapse_demo.yaml     lr 0.1:  clipnorm 0.818, global_clipnorm 0.748, none 0.807
                         lr 1.0:  both collapse at epoch 4 (loss/example = log(1024)); none 0.299
Both clips save lr 0.5, neither saves lr 1.0 on a deep tower (that is the backoff's job), and at
the rates that learn, global clipping at 1.0 shrinks every step ~100x and lags by 0.07 recall.
So the default stays clipnorm=1.0; global_clipnorm is available for those who want the direction
kept (raise its threshold toward the typical pre-clip norm, which the telemetry reports).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from trainer.data import as_strings, feature_types
from trainer.gradients import TelemetryModel
from trainer.spec import ExperimentSpec, FeatureSpec, LayerSpec, TrainingSpec
from trainer.stats import TrainStats
from trainer.vocabulary import read_vocabulary

class SGD(tf_keras.optimizers.SGD):
    """tf-keras' SGD without a momentum slot at momentum 0. Its `build` makes one anyway (its docstring says it
    would not), and `update_step` then adds that slot to every row of the variable on every step: for a 2M-row
    embedding table of which a batch touches a few thousand rows, a dense pass over the table per step and the
    slot's memory besides (bench/README.md, "Data size"). With the slot None, tf-keras' own `update_step` takes
    its momentum-free branches: a sparse gradient updates only its rows."""

    def build(self, var_list):
        if self.momentum:
            super().build(var_list)
            return
        super(tf_keras.optimizers.SGD, self).build(var_list)  # the base optimizer's build, not SGD's slots
        if not getattr(self, "_built", False):
            self.momentums = [None] * len(var_list)
            self._built = True


OPTIMIZERS: dict[str, type[tf_keras.optimizers.Optimizer]] = {
    "adagrad": tf_keras.optimizers.Adagrad,
    "adam": tf_keras.optimizers.Adam,
    "sgd": SGD,
    "rmsprop": tf_keras.optimizers.RMSprop,
}
"""The optimizer whitelist: spec name -> tf-keras class. Nothing else is ever constructed."""

STRING_TYPES = ("id", "categorical", "text", "history")
JIT_BY_DEFAULT = False
"""What `training.jit_compile: None` means. Measured on the project's 2-core CPU box (retail_synthetic,
batch 1024, lookups in the pipeline): XLA trains the telemetry step at ~25 % fewer examples per CPU
second (34-39k against 44-51k), so it stays off; not yet measured on a GPU."""
ID_DTYPE = tf.int32
"""What the lookups give the embeddings: half the bytes of the lookup layers' int64 in every
looked-up row the training dataset holds (a vocabulary past 2**31 entries cannot be embedded anyway)."""


def build_optimizer(training: TrainingSpec, learning_rate: float) -> tf_keras.optimizers.Optimizer:
    """The spec's optimizer at `learning_rate`, with its clipping (clipnorm / global_clipnorm) and weight decay."""
    name = training.optimizer.lower()
    if name not in OPTIMIZERS:
        known = ", ".join(sorted(OPTIMIZERS))
        raise ValueError(f"training.optimizer: unknown optimizer {training.optimizer!r}; known: {known}")
    return OPTIMIZERS[name](
        learning_rate=learning_rate,
        clipnorm=training.clipnorm,
        global_clipnorm=training.global_clipnorm,
        weight_decay=training.weight_decay,
    )


def jit_compile(training: TrainingSpec) -> bool:
    """Whether to XLA-compile the train step: `training.jit_compile`, or where it is faster (None)."""
    return training.jit_compile if training.jit_compile is not None else JIT_BY_DEFAULT


def input_dtype(feature: FeatureSpec) -> tf.DType:
    return tf.string if feature.type in STRING_TYPES else tf.float32


def _vocabulary(counts: pd.Series) -> list[str]:
    """The non-empty values of `counts` (value -> rows), most frequent first (ties by value), so
    builds are deterministic."""
    counts = counts[counts.index != ""]
    order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [value for value, _ in order]


def untracked(vocabulary: list[str]) -> np.ndarray:
    """A vocabulary as a StringLookup keeps it without tracking it: a list attribute of a Keras layer
    becomes a tracked list, which every walk of the model's objects (each save, each checkpoint)
    walks value by value (an export of a 67k-customer model took 62 s, nearly all of it there)."""
    return np.asarray(vocabulary, dtype=object)


class LookupEmbedding(tf_keras.layers.Layer):
    """A string id or category: StringLookup (one OOV bucket), or with `buckets` Hashing into that
    many rows (no vocabulary), + Embedding. Takes the strings or the ids `preprocess` gave them.
    With `lookup`, that lookup layer (shared) instead of a new one."""

    def __init__(self, vocabulary: list[str] | None, dim: int, buckets: int | None = None,
                 lookup: tf_keras.layers.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        if lookup is not None:
            self.lookup = lookup
        elif buckets:
            self.lookup = tf_keras.layers.Hashing(num_bins=buckets)
        else:
            self.lookup = tf_keras.layers.StringLookup(vocabulary=untracked(vocabulary), mask_token=None)
        self.buckets = buckets
        self.embedding = tf_keras.layers.Embedding(buckets or self.lookup.vocabulary_size(), dim)

    def twin(self) -> LookupEmbedding:
        """Another member's encoder: this lookup (one table, shared) with embeddings of its own."""
        return type(self)(None, self.embedding.output_dim, self.buckets, lookup=self.lookup, name=self.name)

    def preprocess(self, values: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.lookup(values), ID_DTYPE)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        return self.embedding(self.preprocess(values) if values.dtype == tf.string else values)


class TokenBagEmbedding(tf_keras.layers.Layer):
    """Whitespace-separated tokens: the mean of their embeddings (padding masked; no tokens -> 0).
    Takes the strings or the token id matrix `preprocess` gave them (0 pads). With `lookup`, that
    lookup layer (shared) instead of a new one."""

    def __init__(self, vocabulary: list[str] | None, dim: int, lookup: tf_keras.layers.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        if lookup is None:
            lookup = tf_keras.layers.StringLookup(vocabulary=untracked(vocabulary), mask_token="")
        self.lookup = lookup
        self.embedding = tf_keras.layers.Embedding(self.lookup.vocabulary_size(), dim)

    def twin(self) -> TokenBagEmbedding:
        """Another member's encoder: this lookup (one table, shared) with embeddings of its own."""
        return type(self)(None, self.embedding.output_dim, lookup=self.lookup, name=self.name)

    def preprocess(self, values: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.lookup(tf.strings.split(values).to_tensor(default_value="")), ID_DTYPE)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        ids = self.preprocess(values) if values.dtype == tf.string else values
        vectors = self.embedding(ids)
        mask = tf.cast(tf.not_equal(ids, 0), vectors.dtype)[..., None]
        total = tf.reduce_sum(vectors * mask, axis=1)
        count = tf.maximum(tf.reduce_sum(mask, axis=1), tf.ones([], vectors.dtype))
        return total / count


class PurchaseHistoryEmbedding(TokenBagEmbedding):
    """A buyer's past purchases (space-separated product ids): the mean of their embeddings.

    Given the row's own product (`exclude`, in training, where the row's purchase is in its
    buyer's history), one occurrence of it is left out of the mean: the tower must predict a
    purchase from the buyer's other purchases, not read it off its input. A product bought twice
    keeps its other occurrence, so re-purchases are learned. Serving passes no product.
    `preprocess` leaves it out by masking that token's id (0), so the ids need no product.
    """

    def preprocess(self, values: tf.Tensor, exclude: tf.Tensor | None = None) -> tf.Tensor:
        tokens = tf.strings.split(values).to_tensor(default_value="")
        ids = tf.cast(self.lookup(tokens), ID_DTYPE)
        if exclude is None:
            return ids
        own = tf.equal(tokens, exclude[:, None])
        first_own = own & tf.equal(tf.cumsum(tf.cast(own, tf.int32), axis=1), 1)
        return tf.where(first_own, tf.zeros_like(ids), ids)

    def call(self, values: tf.Tensor, exclude: tf.Tensor | None = None) -> tf.Tensor:
        return super().call(self.preprocess(values, exclude) if values.dtype == tf.string else values)


class NormalizedNumber(tf_keras.layers.Layer):
    """A number standardized with the training mean and variance; missing (NaN) -> 0 (the mean)."""

    def __init__(self, mean: float, variance: float, **kwargs):
        super().__init__(**kwargs)
        self.normalize = tf_keras.layers.Normalization(axis=None, mean=mean, variance=variance)

    def preprocess(self, values: tf.Tensor) -> tf.Tensor:
        return values

    def twin(self) -> NormalizedNumber:
        """Another member's encoder: this one, since it learns nothing."""
        return self

    def call(self, values: tf.Tensor) -> tf.Tensor:
        normalized = self.normalize(values[:, None])
        return tf.where(tf.math.is_nan(normalized), tf.zeros_like(normalized), normalized)


def graph_name(column: str) -> str:
    """`column` as TensorFlow takes it in a layer or op name (letters, digits, `_`, `.`, `-`); a column
    named otherwise (`buyer id`, `prodüct:id`) is spelled with `_` and ends in a hash of its real name,
    so two such columns never share a name."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", column):
        return column
    spelled = re.sub(r"[^A-Za-z0-9_.\-]+", "_", column).strip("_.-") or "column"
    return f"{spelled}_{hashlib.sha1(column.encode()).hexdigest()[:6]}"


def feature_encoder(
    feature: FeatureSpec, train: TrainStats, product_column: str | None = None
) -> tf_keras.layers.Layer:
    """The preprocessing + embedding layer of one feature, fitted on the training rows' statistics (a
    history feature's vocabulary: the training rows' products, `product_column`), unless the feature
    names its vocabulary file or hashes its values."""
    name = f"{graph_name(feature.column)}_{feature.type}"
    dim = feature.embedding_dim
    if feature.hash_buckets:
        return LookupEmbedding(None, dim, buckets=feature.hash_buckets, name=name)
    if feature.type == "history":
        return PurchaseHistoryEmbedding(_fitted(feature, lambda: train.counts[product_column]), dim, name=name)
    if feature.column not in train:
        raise ValueError(f"feature column {feature.column!r} is missing from the training data")
    if feature.type == "numeric":
        moments = train.moments[feature.column]
        return NormalizedNumber(moments.mean, moments.variance, name=name)
    if feature.type == "text":
        return TokenBagEmbedding(_fitted(feature, lambda: train.token_counts(feature.column)), dim, name=name)
    return LookupEmbedding(_fitted(feature, lambda: train.counts[feature.column]), dim, name=name)


def _fitted(feature: FeatureSpec, counts: Callable[[], pd.Series]) -> list[str]:
    """The feature's vocabulary: its file's values, else those `counts()` counts, by frequency."""
    return read_vocabulary(feature.vocabulary) if feature.vocabulary else _vocabulary(counts())


def tower_layers(layers: Sequence[LayerSpec], output_dim: int, tower: str) -> list[tf_keras.layers.Layer]:
    """Keras layers for a tower's LayerSpecs; the last dense layer is linear unless told otherwise."""
    dense_positions = [i for i, layer in enumerate(layers) if layer.type == "dense"]
    last_dense = dense_positions[-1] if dense_positions else None
    built: list[tf_keras.layers.Layer] = []
    for i, layer in enumerate(layers):
        if layer.type == "dropout":
            built.append(tf_keras.layers.Dropout(layer.rate or 0.0, name=f"{tower}_dropout_{i}"))
            continue
        default_activation = "linear" if i == last_dense else "relu"
        units = layer.units if layer.units is not None else output_dim
        built.append(
            tf_keras.layers.Dense(units, activation=layer.activation or default_activation, name=f"{tower}_dense_{i}")
        )
    if last_dense is None:
        built.append(tf_keras.layers.Dense(output_dim, name=f"{tower}_dense_out"))
    return built


class Tower(tf_keras.Model):
    """One side of the model: a dict of feature columns -> float32 embeddings.

    With `members` > 1 it holds that many encoder + layer stacks over the same features, each with
    weights of its own, and returns their embeddings side by side (`member_blocks` splits them). The
    members share each feature's lookup (one vocabulary table), so the inputs are preprocessed once."""

    def __init__(
        self,
        name: str,
        features: Sequence[FeatureSpec],
        train: TrainStats,
        layers: Sequence[LayerSpec],
        output_dim: int,
        normalize: bool = False,
        product_column: str | None = None,
        members: int = 1,
    ):
        super().__init__(name=name)
        self.features = list(features)
        self.product_column = product_column  # the row's product, left out of a purchase history in training
        self.encoders = [feature_encoder(feature, train, product_column) for feature in self.features]
        self.stack = tower_layers(layers, output_dim, name)
        self.more_members = [  # apart from the first, so a checkpoint of a one-member tower keeps its layout
            ([encoder.twin() for encoder in self.encoders], tower_layers(layers, output_dim, f"{name}_{i}"))
            for i in range(1, members)
        ]
        self.normalize = normalize

    @property
    def members(self) -> int:
        return 1 + len(self.more_members)

    @property
    def columns(self) -> list[str]:
        return [feature.column for feature in self.features]

    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """TensorSpecs of the tower's input columns (one value per row), for serving signatures."""
        return {f.column: tf.TensorSpec([None], input_dtype(f), name=graph_name(f.column)) for f in self.features}

    def _key(self, feature: FeatureSpec) -> str:
        return f"{self.name}/{feature.column}"

    def preprocess(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The raw columns as the ids and numbers the embeddings take, keyed `tower/column` (a
        purchase history without the row's own product, when `inputs` has it)."""
        return {
            self._key(feature): encoder.preprocess(inputs[feature.column], exclude=inputs.get(self.product_column))
            if isinstance(encoder, PurchaseHistoryEmbedding)
            else encoder.preprocess(inputs[feature.column])
            for feature, encoder in zip(self.features, self.encoders)
        }

    def preprocessed(self, inputs: dict[str, tf.Tensor]) -> bool:
        return all(self._key(feature) in inputs for feature in self.features)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Embeddings of raw columns, or of what `preprocess` made of them (the members' side by side)."""
        if not self.preprocessed(inputs):
            inputs = self.preprocess(inputs)
        members = [(self.encoders, self.stack), *self.more_members]
        blocks = [self._member(encoders, stack, inputs, training) for encoders, stack in members]
        return blocks[0] if len(blocks) == 1 else tf.concat(blocks, axis=-1)

    def _member(self, encoders, stack, inputs: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        parts = [encoder(inputs[self._key(feature)]) for feature, encoder in zip(self.features, encoders)]
        x = tf.concat([tf.cast(part, self.compute_dtype) for part in parts], axis=-1)
        for layer in stack:
            x = layer(x, training=training)
        x = tf.cast(x, tf.float32)
        return tf.math.l2_normalize(x, axis=-1) if self.normalize else x


def member_blocks(embeddings: tf.Tensor, members: int) -> list[tf.Tensor]:
    """A tower's embeddings split into its members' (equal blocks of the last axis)."""
    return tf.split(embeddings, members, axis=-1) if members > 1 else [embeddings]


def float32_retrieval(temperature: float) -> tfrs.tasks.Retrieval:
    """The Retrieval task computing scores and loss in float32 even under mixed precision (a
    mixed_float16 layer would cast only its first input, the queries, to float16)."""
    policy = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("float32")
    try:
        return tfrs.tasks.Retrieval(temperature=temperature)
    finally:
        tf_keras.mixed_precision.set_global_policy(policy)


class SamplingProbability(tf_keras.layers.Layer):
    """A product id's share of the training rows (`counts`: rows per id), how often it is drawn as an
    in-batch candidate, raised to `weight` (the logQ weight: the logits lose weight x log(share)). An
    id absent from training gets the share of one row. Shares are clipped to [1e-6, 1] as TFRS's
    correction clips them, then divided by the largest, so a weight above 1 pushes far fewer rare
    products into that clip again (the softmax is the same: every logit of a row moves alike)."""

    def __init__(self, counts: pd.Series, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        total = float(counts.sum())
        largest = max(float(counts.max()), 1.0) if len(counts) else 1.0

        def weighted(rows: np.ndarray | float) -> np.ndarray:
            return (np.clip(np.divide(rows, total), 1e-6, 1.0) / np.clip(largest / total, 1e-6, 1.0)) ** weight

        keys = tf.constant(counts.index.to_numpy(dtype=object), tf.string)
        shares = tf.constant(weighted(counts.to_numpy(dtype=np.float64)).astype(np.float32))
        initializer = tf.lookup.KeyValueTensorInitializer(keys, shares)
        self.table = tf.lookup.StaticHashTable(initializer, default_value=np.float32(weighted(1.0)))

    def call(self, product_ids: tf.Tensor) -> tf.Tensor:
        return self.table.lookup(product_ids)


class CatalogueNegatives(tf_keras.layers.Layer):
    """Every unique candidate as a negative: their features as the product tower's preprocessed ids
    (constants, in catalogue order) and each product id's row among them (-1 for an id not in the
    catalogue)."""

    def __init__(self, candidates: pd.DataFrame, product: Tower, product_column: str, **kwargs):
        super().__init__(**kwargs)
        columns = {f.column: input_dtype(f) for f in product.features}
        raw = {column: tf.constant(values) for column, values in frame_tensors(candidates, columns).items()}
        self.features = {key: tf.constant(values.numpy()) for key, values in product.preprocess(raw).items()}
        ids = tf.constant(candidates[product_column].astype(str).to_numpy(dtype=object), tf.string)
        rows = tf.range(tf.size(ids, out_type=ID_DTYPE), dtype=ID_DTYPE)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(ids, rows), default_value=-1)
        self.size = len(candidates)

    def call(self, product_ids: tf.Tensor) -> tf.Tensor:
        return self.table.lookup(product_ids)


def gather_across_replicas(*local: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Each tensor's rows from every replica (axis 0), this replica's rows first, then the following
    replicas' in order (wrapping around); the tensors themselves outside a multi-replica strategy.
    Replicas may hold different numbers of rows (a last partial batch)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local
    # a batch's input tensor (a looked-up sampling probability) has no device under MultiWorkerMirroredStrategy,
    # and all_gather refuses it ("destinations can not be empty"); an identity is placed on the replica's device
    local = tuple(tf.identity(rows) for rows in local)
    sizes = context.all_gather(tf.shape(local[0])[:1], axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    # one all_gather per tensor: all_gather's gradient cannot take a list of tensors of different ranks
    return tuple(tf.roll(context.all_gather(rows, axis=0), shift=-offset, axis=0) for rows in local)


SAMPLING_PROBABILITY = "sampling_probability"
CATALOGUE_ROW = "catalogue_row"


class TwoTowerModel(TelemetryModel):
    """Buyer (query) and product (candidate) towers trained with the in-batch softmax; with
    `sampling_probability` (a SamplingProbability of `product_column`) the logits are logQ-corrected.

    `cross_replica_negatives` (on unless measuring what it costs): under a distribution strategy,
    every query is scored against the whole global batch's candidates, not only its replica's.
    With `catalogue` (a CatalogueNegatives) the softmax runs over every unique candidate instead:
    the exact softmax, so neither logQ correction nor a cross-replica gather is needed. Towers of
    several members are scored member by member, each on its own softmax (`member_blocks`)."""

    def __init__(
        self,
        buyer: Tower,
        product: Tower,
        temperature: float = 1.0,
        sampling_probability: SamplingProbability | None = None,
        product_column: str | None = None,
        cross_replica_negatives: bool = True,
        catalogue: CatalogueNegatives | None = None,
    ):
        super().__init__()
        if (sampling_probability is not None or catalogue is not None) and product_column is None:
            raise ValueError("a logQ-corrected or catalogue-softmax model needs its product id column")
        self.buyer = buyer
        self.product = product
        self.task = float32_retrieval(temperature)
        self.sampling_probability = sampling_probability
        self.product_column = product_column
        self.cross_replica_negatives = cross_replica_negatives
        self.catalogue = catalogue
        self.temperature = temperature

    def _negatives(self, *local: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """The in-batch candidates' rows the softmax runs over: the global batch's, or this replica's."""
        return gather_across_replicas(*local) if self.cross_replica_negatives else local

    def towers(self) -> dict[str, tf_keras.layers.Layer]:
        return {"buyer": self.buyer, "product": self.product}

    def preprocess(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """A batch of raw columns as ids and numbers only: both towers' inputs, and each row's
        sampling probability (logQ) or catalogue row, which the product id gave."""
        out = {**self.buyer.preprocess(features), **self.product.preprocess(features)}
        if self.sampling_probability is not None:
            out[SAMPLING_PROBABILITY] = self.sampling_probability(features[self.product_column])
        if self.catalogue is not None:
            out[CATALOGUE_ROW] = self.catalogue(features[self.product_column])
        return out

    def _preprocessed(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        done = self.buyer.preprocessed(features) and self.product.preprocessed(features)
        return features if done else self.preprocess(features)

    def _probability(self, features: dict[str, tf.Tensor]) -> tf.Tensor | None:
        return features[SAMPLING_PROBABILITY] if self.sampling_probability is not None else None

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """This replica's queries' loss sum, each query's softmax over the (global) batch's candidates
        (`features`: raw columns or `preprocess`'s); with several members, the mean of their losses."""
        features = self._preprocessed(features)
        queries = self.buyer(features, training=training)
        if self.catalogue is not None:
            candidates = self.product(self.catalogue.features, training=training)
            return self._mean_over_members(self._catalogue_loss, queries, candidates, features[CATALOGUE_ROW])
        candidates = self.product(features, training=training)
        probability = self._probability(features)
        if probability is None:
            (candidates,) = self._negatives(candidates)
        else:
            candidates, probability = self._negatives(candidates, probability)

        def loss(member_queries: tf.Tensor, member_candidates: tf.Tensor) -> tf.Tensor:
            return self.task(
                member_queries, member_candidates, candidate_sampling_probability=probability, compute_metrics=False
            )

        return self._mean_over_members(loss, queries, candidates)

    def _mean_over_members(self, loss: Callable[..., tf.Tensor], queries: tf.Tensor, candidates: tf.Tensor,
                           *args: tf.Tensor) -> tf.Tensor:
        """`loss(queries, candidates, *args)` of each member's blocks, averaged: each member learns on
        its own softmax."""
        members = self.buyer.members
        pairs = zip(member_blocks(queries, members), member_blocks(candidates, members))
        return tf.add_n([loss(q, c, *args) for q, c in pairs]) / members

    def _catalogue_loss(self, queries: tf.Tensor, candidates: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """The loss sum of each query's softmax over every unique candidate (`rows`: each query's
        product's row among them; rows whose product is not in the catalogue count nothing)."""
        logits = tf.matmul(queries, candidates, transpose_b=True) / self.temperature
        known = rows >= 0
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(rows, 0), logits=logits)
        return tf.reduce_sum(tf.where(known, losses, tf.zeros_like(losses)))

    def uniform_loss_sum(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """This replica's loss sum if every score were alike: logits -log p_j with logQ correction,
        else equal, over the softmax's candidates j: sum_i [log p_i + logsumexp_j(-log p_j)]; without
        logQ (log p = 0) that is B_local log(B), B the batch the softmax runs over; over the whole
        catalogue of N candidates, log(N) per query whose product is in it."""
        features = self._preprocessed(features)
        if self.catalogue is not None:
            known = tf.reduce_sum(tf.cast(features[CATALOGUE_ROW] >= 0, tf.float32))
            return known * tf.math.log(tf.cast(self.catalogue.size, tf.float32))
        probability = self._probability(features)
        if probability is None:
            log_p = tf.zeros(tf.shape(next(iter(features.values())))[:1])
        else:
            log_p = tf.math.log(tf.clip_by_value(probability, 1e-6, 1.0))  # clipped as TFRS's logQ correction does
        (every_log_p,) = self._negatives(log_p)
        return tf.reduce_sum(log_p) + tf.cast(tf.size(log_p), tf.float32) * tf.reduce_logsumexp(-every_log_p)


def output_size(layers: Sequence[LayerSpec], output_dim: int) -> int:
    """The embedding size a tower's layers produce (its last dense layer's units, else output_dim)."""
    dense = [layer for layer in layers if layer.type == "dense"]
    return (dense[-1].units or output_dim) if dense else output_dim


TrainRows = pd.DataFrame | TrainStats
"""What preprocessing is fitted on: the training frame, or its statistics (trainer.stats)."""


def train_stats(spec: ExperimentSpec, train: TrainRows) -> TrainStats:
    """`train`'s statistics over the spec's feature columns (those of a frame counted here)."""
    return train if isinstance(train, TrainStats) else TrainStats.of(train, feature_types(spec))


def build_towers(spec: ExperimentSpec, train: TrainRows) -> tuple[Tower, Tower]:
    """The buyer and product towers of `spec`, preprocessing fitted on `train`."""
    train = train_stats(spec, train)
    model = spec.model
    buyer_size = output_size(model.buyer_layers, model.output_dim)
    product_size = output_size(model.product_layers, model.output_dim)
    if buyer_size != product_size:
        raise ValueError(
            f"model.buyer_layers end in {buyer_size} units but model.product_layers in {product_size}: "
            "the two towers' embeddings must have the same size to be dotted"
        )
    buyer = Tower(
        "buyer", spec.buyer_features, train, model.buyer_layers, model.output_dim, model.normalize,
        product_column=spec.product_id_column, members=model.members,
    )  # fmt: skip
    product = Tower(
        "product", spec.product_features, train, model.product_layers, model.output_dim, model.normalize,
        members=model.members,
    )  # fmt: skip
    return buyer, product


def build_model(spec: ExperimentSpec, train: TrainRows, candidates: pd.DataFrame | None = None) -> TwoTowerModel:
    """The two-tower model of `spec` (not compiled), preprocessing fitted on `train` (the frame or its
    statistics); `candidates` (the unique products) are the negatives of `model.negatives: catalogue`."""
    train = train_stats(spec, train)
    buyer, product = build_towers(spec, train)
    column = spec.product_id_column
    catalogue = None
    if spec.model.negatives == "catalogue":
        if candidates is None:
            raise ValueError("model.negatives: catalogue needs the unique candidates")
        catalogue = CatalogueNegatives(candidates, product, column, name="catalogue_negatives")
    logq = spec.model.logq_correction and catalogue is None
    probability = (
        SamplingProbability(train.counts[column], spec.model.logq_weight, name="sampling_probability") if logq else None
    )
    return TwoTowerModel(
        buyer,
        product,
        temperature=spec.model.temperature,
        sampling_probability=probability,
        product_column=column,
        catalogue=catalogue,
    )


def model_columns(spec: ExperimentSpec) -> dict[str, tf.DType]:
    """Every input column of both towers and its dtype (a column in both towers appears once)."""
    return {f.column: input_dtype(f) for f in [*spec.buyer_features, *spec.product_features]}


def frame_tensors(frame: pd.DataFrame, columns: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    """The columns of `frame` as numpy arrays of the model's input dtypes (str or float32)."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are missing from the data frame (have {list(frame.columns)})")
    return {
        column: as_strings(frame[column])
        if dtype == tf.string
        else frame[column].to_numpy(dtype=np.float32)
        for column, dtype in columns.items()
    }


Preprocess = Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


PREPROCESS_CHUNK_ROWS = 1 << 16
"""Rows looked up at a time: only one chunk's strings are ever TF strings at once (whole 3M-row columns
of them were a 0.46 GiB peak, measured by bench/bench_scale.py --stages)."""


def _looked_up(
    frame: pd.DataFrame, columns: dict[str, tf.DType], preprocess: Preprocess | None
) -> dict[str, tf.Tensor]:
    """`frame`'s columns as tensors, through `preprocess` (if any) a chunk of rows at a time, token
    matrices padded with 0 (the mask id) to the widest chunk's width.

    When every string column is a Categorical (the experiment's data), the numpy columns are made
    once for the whole frame: their rows share the categories' strings. A plain string column would
    make one Python string per row, so it is spelled a chunk at a time instead."""
    preprocess = preprocess or (lambda tensors: tensors)
    strings = [column for column, dtype in columns.items() if dtype == tf.string and column in frame.columns]
    whole = all(isinstance(frame[column].dtype, pd.CategoricalDtype) for column in strings)
    arrays = frame_tensors(frame, columns) if whole else None
    step = PREPROCESS_CHUNK_ROWS

    def rows_from(start: int) -> dict[str, np.ndarray]:
        if arrays is None:
            return frame_tensors(frame.iloc[start : start + step], columns)
        return {column: values[start : start + step] for column, values in arrays.items()}

    chunks = [
        preprocess({column: tf.constant(values) for column, values in rows_from(start).items()})
        for start in range(0, max(len(frame), 1), step)
    ]
    return {key: _concat_padded([chunk[key] for chunk in chunks]) for key in chunks[0]}


def _concat_padded(parts: list[tf.Tensor]) -> tf.Tensor:
    if parts[0].shape.rank == 2:
        width = max(part.shape[1] for part in parts)
        parts = [tf.pad(part, [[0, 0], [0, width - part.shape[1]]]) for part in parts]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


def make_dataset(
    frame: pd.DataFrame,
    columns: dict[str, tf.DType],
    batch_size: int,
    shuffle_seed: int | None = None,
    preprocess: Preprocess | None = None,
) -> tf.data.Dataset:
    """Batches of feature dicts from `frame`; reshuffled every epoch when `shuffle_seed` is given.

    `preprocess` (a model's) runs once over all the rows, vectorized, so no string reaches the step.
    An epoch permutes the row indices and gathers each batch's rows in a parallel map: tf.data never
    handles a row at a time."""
    rows = _looked_up(frame, columns, preprocess)
    dataset = _batch_indices(len(frame), batch_size, shuffle_seed).map(
        lambda index: {key: tf.gather(values, index) for key, values in rows.items()},
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _batch_indices(n_rows: int, batch_size: int, shuffle_seed: int | None) -> tf.data.Dataset:
    """Batches of row indices: in order, or slices of a new seeded permutation of all rows each time
    the dataset is iterated (each epoch). One int32 tensor per epoch: a tf.data shuffle buffer of every
    row index held ~190 bytes per row (0.55 GiB at 3M rows, measured ad hoc; the epoch's peak in
    bench/bench_scale.py --stages fell with it)."""
    if shuffle_seed is None:
        return tf.data.Dataset.range(n_rows).batch(batch_size)
    n_batches = -(-n_rows // batch_size)

    def permutation(seed: tf.Tensor) -> tf.Tensor:
        rows = tf.range(n_rows, dtype=tf.int32 if n_rows < 2**31 else tf.int64)
        return tf.random.experimental.stateless_shuffle(rows, seed=tf.stack([seed, 0]))

    def slices(order: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.range(n_batches).map(lambda i: order[i * batch_size : (i + 1) * batch_size])

    epoch_seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1)
    indices = epoch_seeds.map(permutation).flat_map(slices)
    return indices.apply(tf.data.experimental.assert_cardinality(n_batches))


def embed(tower: tf_keras.layers.Layer, frame: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
    """Embeddings of every row of `frame` through `tower` (float32, rows in frame order)."""
    columns = {f.column: input_dtype(f) for f in tower.features}
    dataset = make_dataset(frame, columns, batch_size)
    return np.concatenate([tower(batch).numpy() for batch in dataset], axis=0)
