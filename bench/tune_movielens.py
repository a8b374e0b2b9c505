"""Tune examples/movielens.yaml on a validation split carved from the training split only.

The test split of bench/quality_movielens.py is never read here. The example's own split (random
80/20, seed 42) gives the outer training rows; those are split again (random 80/20, seed 42) into
an inner train and a validation set, written to a Parquet file, and every candidate config is
trained on the inner train and scored on validation with the same protocol as the benchmark:
recall@5/10/50/100 over the 1682 unique movies (the movie catalogue), with and without
exclude_seen, beside popularity on the same validation queries.

    .venv/bin/python bench/tune_movielens.py                 # every candidate, one at a time
    .venv/bin/python bench/tune_movielens.py --only logq-adam-lr0.01 tutorial
    .venv/bin/python bench/tune_movielens.py --list

A candidate is the example config with overrides (`training.optimizer: adam`); one this towerflow
cannot build (a spec field it does not have) is reported and skipped. The example is the one of today,
so a rerun of an earlier round's candidate measures its change on today's example (four members since
the sixth round; `model.members: 1` gives back the single tower pair the earlier rounds measured on).

Measured (2 shared CPU cores; validation = 16,000 ratings of 939 users, inner train 64,000):

    candidate (validation)                    recall@10  @100     exclude_seen @10  @100
    popularity                                0.0498     0.3016   0.0747            0.3835
    tutorial (TFRS recipe)                    0.0129     0.1654   0.0194            0.2121
    example before tuning (adagrad 0.05)      0.0136     0.1434   0.0184            0.1771
    adam-lr0.01                               0.0175     0.1813   0.0240            0.2279   <- examples/movielens.yaml
    adam-lr0.01-t0.1                          0.0138     0.1639   0.0196            0.2081
    logq-adam-lr0.01                          0.0602     0.4016   0.1134            0.5439   <- + model.logq_correction
    logq-adam-lr0.003                         0.0589     0.3969   0.1116            0.5364
    logq-adam-lr0.01-t0.1                     0.0542     0.3939   0.1077            0.5382
    logq-adam-lr0.01-t0.5                     0.0584     0.4012   0.1123            0.5435
    logq-adam-lr0.01-b512                     0.0561     0.4017   0.1143            0.5439
    logq-adam-lr0.01-b4096                    0.0535     0.3857   0.1006            0.5158
    logq-adam-lr0.01-e3                       0.0579     0.3905   0.1087            0.5193
    logq-adam-lr0.01-e10                      0.0516     0.3979   0.1158            0.5497
    logq-adam-lr0.01-early-stop               0.0561     0.3940   0.0993            0.5148
    logq-adam-lr0.01-zip-title                0.0577     0.3963   0.1113            0.5386
    logq-adam-lr0.01-ids64                    0.0568     0.3997   0.1106            0.5454
    logq-adam-lr0.01-one-layer                0.0424     0.3848   0.1101            0.5617
    logq + remove_accidental_hits (a probe)   0.0584     0.3996   0.1108            0.5431

Without logQ correction no setting comes near popularity: in-batch negatives are drawn in
proportion to popularity, so the plain in-batch softmax learns lift, p(movie | user) / p(movie),
and ranks popular movies low. With it, logq-adam-lr0.01 is best or within noise (about +-0.002 at
@10) in every column; longer training (e10) or a shallower tower gains at exclude_seen @100 but
loses at recall@10 without exclusion, the goal's tightest column. Early stopping on validation
loss stopped too early to help.

Second round (2026-12-02), against EASE and ItemKNN on the same validation split; the goal column is
exclude_seen (the example's setting), where EASE (l2 300) reaches @10 0.1266, @100 0.5581 and
ItemKNN 0.1129 / 0.4729. Each candidate is logq-adam-lr0.01 (the first round's winner) plus:

    candidate (validation, exclude_seen)      @10      @100     train s
    (first round's winner, 5 epochs)          0.1134   0.5439   12
    norm-t0.1 (normalize, temperature 0.1)    0.1134   0.5439   13
    norm-t0.2 / norm-t0.05                    0.1119 / 0.1139   0.5476 / 0.5480
    norm-t0.1-e10 (10 epochs)                 0.1201   0.5634   21
    norm-t0.1-e15-zip-title / e20             0.1154 / 0.1158   0.5626 / 0.5633   (overfits)
    norm-t0.1-e10-lr0.003                     0.1187   0.5621   25
    norm-t0.1-ids64-e10                       0.1174   0.5602   17
    norm-t0.1-wide-e10 (256-64 towers, 64-d)  0.1189   0.5647   24
    norm-t0.1-e10-zip-title (+ zip, title)    0.1221   0.5641   28   <- examples/movielens.yaml
      ... -b512 / -t0.07 / -t0.15 / -e7       0.1219 / 0.1174 / 0.1166 / 0.1180
      ... -out64 / -dropout 0.2               0.1181 / 0.1177
      ... + purchase history (type: history)  0.1218   0.5636   85
    history (5 epochs) / history-norm-e10     0.1117 / 0.1204   0.5496 / 0.5609
    catalogue softmax, norm-t0.1, e10         0.1162   0.5519   51
    catalogue t1 / norm-t0.05 / -b256 / -e5   0.1103 / 0.1149 / 0.1172 / 0.1111

Ten epochs with normalized towers at temperature 0.1 and the zip code and title features gained
+0.009 at @10 and +0.020 at @100; nothing else tried moved @10 past that: neither the exact
softmax over the whole catalogue (`model.negatives: catalogue`) nor the user's purchase history
as a feature. On validation the chosen config is 0.96x EASE at @10 and 1.01x at @100.

Third round (2026-12-02): decoupled weight decay (`training.weight_decay`, AdamW-style, on every
weight), since EASE's strength on this data is its heavy l2 and the catalogue softmax, which should
have won, overfit. Each candidate is the example (second round's winner) plus:

    candidate (validation, exclude_seen)      @10      @100     train s
    example, rerun (no decay)                 0.1212   0.5644   37
    wd0.01 / wd0.05 / wd0.2 / wd1.0           0.1222 / 0.1248 / 0.1206 / 0.1149
                                              0.5603 / 0.5602 / 0.5552 / 0.5220
    wd0.05-e20 / wd0.2-e20 (20 epochs)        0.1210 / 0.1231   0.5597 / 0.5613   ~100

The best, wd0.05, gains +0.004 at @10 (about twice the run-to-run noise) and loses 0.004 at @100:
a trade, not a gain, so the example keeps no decay; the field stays for teams whose data overfits.

Fourth round (2026-12-03): the exact catalogue softmax, which overfit alone, with weight decay, and
wider id embeddings held back by decay. Each candidate is the example plus:

    candidate (validation, exclude_seen)      @10      @100     train s
    example, rerun                            0.1182   0.5584   13
    catalogue-wd0.05 / catalogue-wd0.2        0.1146 / 0.1148   0.5573 / 0.5483   15
    ids128-wd0.05 (128-d id embeddings)       0.1169   0.5569   14

None gains: the example stays, at 0.93-0.96x EASE's validation @10 across reruns (the goal is not met).

Fifth round (2026-12-06): towers that read the buyer's purchase history instead of an id, as EASE and
Mult-VAE do (the id made constant by `hash_buckets: 1`), wider, and with the catalogue softmax:

    candidate (validation, exclude_seen)      @10      @100     train s
    example, rerun                            0.1179   0.5601   17
    history-only (32-d)                       0.1177   0.5474   27
    history-only-wide (128-d, 256-128 towers) 0.1204   0.5540   61
    history-only-linear (128-d, one layer)    0.0913   0.4941   85
    history-only-catalogue / -wide-catalogue  0.1181 / 0.1192   0.5511 / 0.5513   46 / 78

Ad hoc probes of the same round, each a monkeypatch of this script's run (not committed, since none gains):
a cosine learning-rate decay to 0 (example, 10 epochs 0.1150 / 0.5575; 20 epochs 0.1165 / 0.5602; 20 at lr
0.02 0.1138 / 0.5539); a history of up to 1000 purchases instead of 100 (history-only 0.1158 / 0.5509, the
example + history 0.1170 / 0.5627); each history token dropped with probability 0.5 in training, the
denoising of Mult-DAE (history-only-wide 0.1212 / 0.5531, -wide-catalogue 0.1230 / 0.5524, the same for 20
epochs 0.1192 / 0.5597, 256-d 0.1191 / 0.5464, the example's features + a 128-d history, catalogue
0.1189 / 0.5610). Every model lands at 0.115-0.123 at @10 against EASE's 0.1266 (run-to-run noise is about
+-0.003); several pass EASE at @100 (0.5581) but none at both. The goal is still not met.

One more ad hoc probe points where to go next: the scores of several independently trained models summed
(their query and candidate embeddings concatenated, so it is still one dot product and one index). The
example at seeds 42-45: 1 model 0.1179 / 0.5601, 2 0.1221 / 0.5673, 3 0.1237 / 0.5705, 4 0.1246 / 0.5709;
three examples and three history-only-wide models alternating: 0.1245 / 0.5694 at 6. That is 0.98x EASE at
@10 and 1.02x at @100 on validation, for 4x the training.

Sixth round (2026-12-06): that ensemble inside towerflow, `model.members` (tower pairs side by side in one
model, each on its own softmax; they share the batches, so they differ by their initialisation only):

    candidate (validation, exclude_seen)      @10      @100     train s
    members1 (the example before), seed 42/43 0.1179 / 0.1182   0.5601 / 0.5599   15 / 13
    members2, seed 42 / 43                    0.1222 / 0.1212   0.5673 / 0.5654   20 / 22
    members3                                  0.1222   0.5698   32
    members4, seed 42 / 43                    0.1233 / 0.1232   0.5675 / 0.5654   38 / 38   <- examples/movielens.yaml
    members6                                  0.1238   0.5696   58
    members4-e15 (15 epochs)                  0.1204   0.5684   52
    members4-wd0.05                           0.1204   0.5657   39
    members4-t0.07 / -b512 / -lr0.02          0.1238 / 0.1215 / 0.1221   0.5700 / 0.5643 / 0.5599   ~40
    members4-catalogue (exact softmax)        0.1196   0.5659   53
    members4-ids64 / -out64 (wider members)   0.1222 / 0.1220   0.5708 / 0.5751   39 / 45

An ad hoc probe for more diversity, each member's rows weighted by Poisson(1) draws (online bagging), lost:
members4 0.1187 / 0.5519, at 15 epochs 0.1212 / 0.5573. Members gain about +4% at @10 and +1% at @100 over one
pair on both seeds, a little less than separate runs (their batches differ too); four is where the gain levels
off. The example now has `members: 4`: 0.97x EASE's validation @10, 1.01-1.02x at @100. The goal is not met.

Seventh round (2026-12-07): the logQ weight (`model.logq_weight`: each in-batch logit loses weight x log(share),
1 being the unbiased correction), each candidate the example with four members at that weight:

    candidate (validation, exclude_seen)      @10      @100     train s
    logq-weight1.0, two runs                  0.1212 / 0.1233   0.5644 / 0.5675   ~110
    logq-weight0.7                            0.1065   0.5469
    logq-weight1.3, two runs                  0.1257 / 0.1256   0.5671 / 0.5654   <- examples/movielens.yaml
    logq-weight1.5 / 2.0                      0.1243 / 0.1205   0.5611 / 0.5411

(Measured by an ad hoc patch of SamplingProbability before the field existed; the first 1.3 run also let TFRS clip
the rarest movies' weighted shares at 1e-6, which the field avoids by dividing by the largest share.) 1.3 is
0.99x EASE's validation @10 and 1.02x at @100; on test (bench/quality_movielens.py) it gave 0.1650 / 0.6188
against 0.1653 / 0.6214 at 1.0: no gain there. The goal is not met.

Eighth round (2026-12-07), an ad hoc probe (a patch of Tower in a script, not committed): a learned per-movie
bias added to every score, as matrix factorisation has (one more embedding dimension: 1 on the query side, the
movie's bias on the candidate side, one per member), on the example as it is:

    candidate (validation, exclude_seen)      @10      @100     train s
    example, seed 42 / 43                     0.1250 / 0.1264   0.5644 / 0.5633   59 / 84
    + movie bias, seed 42 / 43                0.1273 / 0.1280   0.5665 / 0.5659   66 / 98
    + movie bias at logq_weight 1.0 / 1.5     0.1230 / 0.1257   0.5678 / 0.5609

The bias gains about +0.002 at both ks on both seeds: 1.01x EASE's validation @10 and 1.01x at @100. On test,
measured once after choosing it: 0.1615 / 0.6162 against 0.1655 / 0.6214 without it, the same run. Like the
seventh round's gain, it did not carry over, so the bias was not built. The goal is not met.

Ninth round (2026-12-07), an ad hoc probe (a patch of TwoTowerModel.compute_loss in a script, not committed): the
in-batch softmax with every candidate the query's user rated in training masked out, not only the row's own
movie. In a batch of 1024, many candidates are movies the user rated (popular movies most of all), and the plain
in-batch softmax pushes each of them away from that user as a negative; the evaluation excludes them anyway.

    candidate (validation, exclude_seen)      @10      @100     train s
    example, seed 42 / 43                     0.1250 / 0.1264   0.5644 / 0.5633   30 / 33
    + user's training movies masked, 42 / 43  0.1266 / 0.1255   0.5630 / 0.5619   48 / 43

+0.0016 and -0.0009 at @10, -0.0014 at @100 on both seeds: noise, for 1.4x the training. Not built; the goal is
not met.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from baselines_movielens import L2_CANDIDATES, Protocol
from quality_movielens import EXAMPLE, ByFlag, train_and_evaluate, tutorial_config
from trainer.baselines import ease, item_knn
from trainer.data import load_experiment_data, load_table, split_transactions
from trainer.spec import SpecError, SplitSpec, spec_from_dict

CATALOGUE = "movielens100k://items"

USER_FEATURES = [
    {"column": "user_id", "type": "id", "embedding_dim": 32},
    {"column": "age", "type": "numeric"},
    {"column": "gender", "type": "categorical", "embedding_dim": 4},
    {"column": "occupation", "type": "categorical", "embedding_dim": 8},
    {"column": "zip_code", "type": "categorical", "embedding_dim": 8},
]
MOVIE_FEATURES = [
    {"column": "item_id", "type": "id", "embedding_dim": 32, "is_primary_id": True},
    {"column": "genres", "type": "text", "embedding_dim": 16},
    {"column": "release_year", "type": "categorical", "embedding_dim": 8},
    {"column": "movie_title", "type": "text", "embedding_dim": 16},
]

HISTORY = {"column": "watched", "type": "history", "embedding_dim": 32}
"""The user's training movies (trainer.data.purchase_histories), each row's own movie left out in training."""

NO_ID = {"column": "user_id", "type": "id", "hash_buckets": 1}
"""The buyer key with one embedding for every user: a tower that knows the user only by their history (a spec
built here, not validated: `towerflow validate` asks for at least 2 buckets)."""
WIDE = {
    "product_features[0].embedding_dim": 128, "model.output_dim": 128,
    "model.buyer_layers": [{"units": 256}, {"units": 128}], "model.product_layers": [{"units": 256}, {"units": 128}],
}

UNSET = object()
"""An override value that removes the key, so the spec's default applies."""
ADAM = {"training.optimizer": "adam", "training.learning_rate": 0.01, "model.logq_correction": UNSET}
LOGQ = {**ADAM, "model.logq_correction": True}

CANDIDATES: dict[str, dict[str, Any]] = {
    "example": {},
    "adam-lr0.01": ADAM,
    "adam-lr0.01-t0.1": {**ADAM, "model.temperature": 0.1},
    "logq-adam-lr0.01": LOGQ,
    "logq-adam-lr0.003": {**LOGQ, "training.learning_rate": 0.003},
    "logq-adam-lr0.01-t0.1": {**LOGQ, "model.temperature": 0.1},
    "logq-adam-lr0.01-t0.5": {**LOGQ, "model.temperature": 0.5},
    "logq-adam-lr0.01-b512": {**LOGQ, "training.batch_size": 512},
    "logq-adam-lr0.01-b4096": {**LOGQ, "training.batch_size": 4096},
    "logq-adam-lr0.01-e3": {**LOGQ, "training.epochs": 3},
    "logq-adam-lr0.01-e10": {**LOGQ, "training.epochs": 10},
    "logq-adam-lr0.01-early-stop": {
        **LOGQ, "training.epochs": 15, "training.validation_fraction": 0.1, "training.early_stopping_patience": 1,
    },
    "logq-adam-lr0.01-zip-title": {**LOGQ, "buyer_features": USER_FEATURES, "product_features": MOVIE_FEATURES},
    "logq-adam-lr0.01-ids64": {**LOGQ, "buyer_features[0].embedding_dim": 64, "product_features[0].embedding_dim": 64},
    "logq-adam-lr0.01-one-layer": {
        **LOGQ, "model.output_dim": 64, "model.buyer_layers": [{"units": 64}], "model.product_layers": [{"units": 64}],
    },
    "norm-t0.2": {**LOGQ, "model.normalize": True, "model.temperature": 0.2},
    "norm-t0.1": {**LOGQ, "model.normalize": True, "model.temperature": 0.1},
    "norm-t0.05": {**LOGQ, "model.normalize": True, "model.temperature": 0.05},
    "norm-t0.1-e10": {**LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10},
    "norm-t0.1-e20": {**LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 20},
    "norm-t0.1-e10-lr0.003": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10, "training.learning_rate": 0.003,
    },
    "norm-t0.1-e10-zip-title": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10,
        "buyer_features": USER_FEATURES, "product_features": MOVIE_FEATURES,
    },
    "norm-t0.1-e15-zip-title": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 15,
        "buyer_features": USER_FEATURES, "product_features": MOVIE_FEATURES,
    },
    "norm-t0.1-e10-zip-title-history": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10,
        "buyer_features": [*USER_FEATURES, HISTORY], "product_features": MOVIE_FEATURES,
    },
    "norm-t0.1-e10-zip-title-dropout": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10,
        "buyer_features": USER_FEATURES, "product_features": MOVIE_FEATURES,
        "model.buyer_layers": [{"units": 128}, {"type": "dropout", "rate": 0.2}, {"units": 64}, {"units": 32}],
    },
    **{
        f"norm-zip-title-{label}": {
            **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10,
            "buyer_features": USER_FEATURES, "product_features": MOVIE_FEATURES, **changes,
        }
        for label, changes in {
            "b512": {"training.batch_size": 512},
            "t0.15": {"model.temperature": 0.15},
            "t0.07": {"model.temperature": 0.07},
            "e7": {"training.epochs": 7},
            "out64": {
                "model.output_dim": 64, "model.buyer_layers": [{"units": 128}, {"units": 64}],
                "model.product_layers": [{"units": 128}, {"units": 64}],
            },
        }.items()
    },
    **{
        f"catalogue-{label}": {
            **LOGQ, "model.negatives": "catalogue", "training.epochs": 10,
            "buyer_features": USER_FEATURES, "product_features": MOVIE_FEATURES, **changes,
        }
        for label, changes in {
            "norm-t0.1": {"model.normalize": True, "model.temperature": 0.1},
            "norm-t0.05": {"model.normalize": True, "model.temperature": 0.05},
            "t1": {},
            "norm-t0.1-e5": {"model.normalize": True, "model.temperature": 0.1, "training.epochs": 5},
            "norm-t0.1-b256": {"model.normalize": True, "model.temperature": 0.1, "training.batch_size": 256},
        }.items()
    },
    "history": {**LOGQ, "buyer_features[4]": HISTORY},
    "history-norm-t0.1-e10": {
        **LOGQ, "buyer_features[4]": HISTORY, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10,
    },
    "history-e10": {**LOGQ, "buyer_features[4]": HISTORY, "training.epochs": 10},
    "norm-t0.05-e10": {**LOGQ, "model.normalize": True, "model.temperature": 0.05, "training.epochs": 10},
    "norm-t0.1-ids64-e10": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10,
        "buyer_features[0].embedding_dim": 64, "product_features[0].embedding_dim": 64,
    },
    "norm-t0.1-wide-e10": {
        **LOGQ, "model.normalize": True, "model.temperature": 0.1, "training.epochs": 10, "model.output_dim": 64,
        "model.buyer_layers": [{"units": 256}, {"units": 64}], "model.product_layers": [{"units": 256}, {"units": 64}],
    },
    **{f"wd{decay}": {"training.weight_decay": decay} for decay in (0.01, 0.05, 0.2, 1.0)},
    **{f"wd{decay}-e20": {"training.weight_decay": decay, "training.epochs": 20} for decay in (0.05, 0.2, 1.0)},
    **{f"catalogue-wd{decay}": {"model.negatives": "catalogue", "training.weight_decay": decay} for decay in (0.05, 0.2)},
    "ids128-wd0.05": {
        "buyer_features[0].embedding_dim": 128, "product_features[0].embedding_dim": 128, "training.weight_decay": 0.05,
    },
    **{
        f"history-only{label}": {"buyer_features": [NO_ID, {**HISTORY, "embedding_dim": width}], **changes}
        for label, width, changes in [
            ("", 32, {}),
            ("-wide", 128, WIDE),
            ("-linear", 128, {
                "product_features": [{**MOVIE_FEATURES[0], "embedding_dim": 128}], "model.output_dim": 128,
                "model.buyer_layers": [{"units": 128}], "model.product_layers": [{"units": 128}],
            }),
            ("-catalogue", 32, {"model.negatives": "catalogue"}),
            ("-wide-catalogue", 128, {**WIDE, "model.negatives": "catalogue"}),
        ]
    },
    **{f"members{n}": {"model.members": n} for n in (1, 2, 3, 4, 6)},
    "members4-wd0.05": {"model.members": 4, "training.weight_decay": 0.05},
    "members4-e15": {"model.members": 4, "training.epochs": 15},
    "members4-t0.07": {"model.members": 4, "model.temperature": 0.07},
    "members4-b512": {"model.members": 4, "training.batch_size": 512},
    "members4-lr0.02": {"model.members": 4, "training.learning_rate": 0.02},
    "members4-catalogue": {"model.members": 4, "model.negatives": "catalogue"},
    "members4-ids64": {
        "model.members": 4, "buyer_features[0].embedding_dim": 64, "product_features[0].embedding_dim": 64,
    },
    "members4-out64": {
        "model.members": 4, "model.output_dim": 64, "model.buyer_layers": [{"units": 128}, {"units": 64}],
        "model.product_layers": [{"units": 128}, {"units": 64}],
    },
    **{f"{name}-seed43": {**changes, "training.seed": 43}
       for name, changes in [(f"members{n}", {"model.members": n}) for n in (1, 2, 4)]},
    **{f"logq-weight{weight}": {"model.logq_weight": weight} for weight in (0.7, 1.0, 1.15, 1.3, 1.5, 2.0)},
    **{f"logq-weight{weight}-seed43": {"model.logq_weight": weight, "training.seed": 43} for weight in (1.0, 1.3)},
}  # fmt: skip
"""Candidate name -> overrides of the example config (dotted path -> value)."""


def override(config: dict, changes: dict[str, Any]) -> dict:
    """A copy of `config` with each path set to its value (or removed, for UNSET); a path is dotted
    keys and list indices, e.g. `model.temperature` or `buyer_features[0].embedding_dim` (the index
    one past a list's end appends)."""
    config = copy.deepcopy(config)
    for path, value in changes.items():
        steps: list[str | int] = []
        for part in path.split("."):
            name, *indices = part.replace("]", "").split("[")
            steps += [name, *map(int, indices)]
        node = config
        for step in steps[:-1]:
            node = node[step] if isinstance(step, int) else node.setdefault(step, {})
        if value is UNSET:
            node.pop(steps[-1], None)
        elif isinstance(node, list) and steps[-1] == len(node):
            node.append(copy.deepcopy(value))  # one index past the end appends
        else:
            node[steps[-1]] = copy.deepcopy(value)
    return config


def write_outer_train(split: SplitSpec, path: Path) -> None:
    """The benchmark's training rows (the example's split of all ratings) as Parquet; test rows are dropped."""
    train, _ = split_transactions(load_table("movielens100k://ratings"), split)
    train.to_parquet(path, index=False)


def validation_data(train_path: Path, split: SplitSpec) -> dict:
    """The `data` section that splits the outer training rows into inner train and validation."""
    return {"transactions": str(train_path), "products": CATALOGUE, "split": split.model_dump()}


def classical(config: dict) -> dict[str, ByFlag]:
    """ItemKNN and EASE (its l2 the best on this very validation split) on the tuning split, both flags."""
    spec = spec_from_dict(config, "baselines")
    data = load_experiment_data(spec)
    candidates = data.candidates[spec.product_id_column].to_numpy()
    table: dict[str, ByFlag] = {"itemknn": {}, "ease": {}}
    for flag in (False, True):
        evaluation = spec.evaluation.model_copy(update={"exclude_seen": flag})
        split = Protocol(spec.model_copy(update={"evaluation": evaluation}), data.train, data.test, candidates)
        table["itemknn"][flag] = split.recall(item_knn(split.fit))
        table["ease"][flag] = max(
            (split.recall(ease(split.fit, l2)) for l2 in L2_CANDIDATES), key=lambda r: sum(r.values())
        )
    return table


def render(results: dict[str, tuple[ByFlag, ByFlag, float]], baselines: dict[str, ByFlag], ks: list[int]) -> str:
    header = f"{'candidate':<34}{'excl':<6}" + "".join(f"{'@' + str(k):>8}" for k in ks) + "   train s"
    lines = [header, "-" * len(header)]
    for flag in (False, True):
        popularity = next(iter(results.values()))[1][flag]
        lines.append(f"{'popularity':<34}{str(flag)[0]:<6}" + "".join(f"{popularity[k]:>8.4f}" for k in ks))
        for name, recall in baselines.items():
            lines.append(f"{name:<34}{str(flag)[0]:<6}" + "".join(f"{recall[flag][k]:>8.4f}" for k in ks))
        for name, (model, _, seconds) in results.items():
            values = "".join(f"{model[flag][k]:>8.4f}" for k in ks)
            lines.append(f"{name:<34}{str(flag)[0]:<6}{values}{seconds:>9.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all); 'tutorial' too")
    parser.add_argument("--list", action="store_true", help="list the candidates and exit")
    args = parser.parse_args(argv)
    names = ["tutorial", *CANDIDATES]
    if args.list:
        print("\n".join(names))
        return 0
    chosen = args.only or names
    unknown = [name for name in chosen if name not in names]
    if unknown:
        parser.error(f"unknown candidate(s): {', '.join(unknown)}; see --list")

    example = yaml.safe_load(EXAMPLE.read_text())
    split = SplitSpec.model_validate(example["data"]["split"])
    ks = example["evaluation"]["ks"]
    results: dict[str, tuple[ByFlag, ByFlag, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tune-movielens-") as tmp:
        train_path = Path(tmp) / "outer_train.parquet"
        write_outer_train(split, train_path)
        data = validation_data(train_path, split)
        baselines = classical({**example, "data": data})
        for name in chosen:
            if name == "tutorial":
                config = tutorial_config(data, ks)
            else:
                config = override({**example, "data": data}, CANDIDATES[name])
            try:
                spec = spec_from_dict(config, name)
            except SpecError as error:
                print(f"{name}: not run, this towerflow cannot build it: {error}", flush=True)
                continue
            results[name] = train_and_evaluate(spec, str(Path(tmp) / name))
            model, popularity, seconds = results[name]
            print(
                f"{name}: val recall@10 {model[False][10]:.4f} @100 {model[False][100]:.4f}; exclude_seen "
                f"@10 {model[True][10]:.4f} @100 {model[True][100]:.4f}; {seconds:.0f}s",
                flush=True,
            )
    print(render(results, baselines, ks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
