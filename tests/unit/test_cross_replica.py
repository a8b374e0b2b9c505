"""In-batch negatives under a distribution strategy: two replicas train exactly as one device.

Runs on two logical CPU devices in a subprocess (logical devices must be configured before any
TensorFlow op, which would poison every other test in this process).
"""

import json
import math
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np, pandas as pd
    import trainer, tensorflow as tf, tf_keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer.model import build_model, make_dataset, model_columns
    from trainer.spec import spec_from_dict

    rng = np.random.default_rng(0)
    buyers = rng.integers(0, 30, 71)  # batches of 64 and 7: the last one splits unevenly
    items = np.where(rng.random(71) < 0.8, buyers % 7, rng.integers(0, 7, 71))
    frame = pd.DataFrame({"buyer": [f"b{b}" for b in buyers], "item": [f"i{i}" for i in items]})

    def train(spec, strategy, cross_replica, weights=None):
        with strategy.scope():
            tf_keras.utils.set_random_seed(0)
            model = build_model(spec, frame)
            model.cross_replica_negatives = cross_replica
            model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=1.0))
            dataset = make_dataset(frame, model_columns(spec), batch_size=64)
            model.compute_loss(next(iter(dataset)))  # build
            if weights is not None:
                model.set_weights(weights)
        start = model.get_weights()
        logs = model.fit(dataset, epochs=1, verbose=0).history
        return start, model.get_weights(), {key: values[0] for key, values in logs.items()}

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one per process: collective keys are its own
    out = {}
    for logq in (False, True):
        spec = spec_from_dict({
            "name": "replicas", "data": {"transactions": "memory://unused.csv"},
            "buyer_features": [{"column": "buyer", "type": "id", "embedding_dim": 8}],
            "product_features": [{"column": "item", "type": "id", "embedding_dim": 8}],
            "model": {"output_dim": 8, "logq_correction": logq,
                      "buyer_layers": [{"units": 16}, {"units": 8}], "product_layers": [{"units": 8}]},
        })
        start, single, single_logs = train(spec, tf.distribute.get_strategy(), True)
        for cross_replica in (True, False):
            _, weights, logs = train(spec, mirrored, cross_replica, weights=start)
            step = max(float(np.max(np.abs(a - b))) for a, b in zip(start, single))
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, single))
            out[f"logq={logq} cross_replica={cross_replica}"] = {
                "single": single_logs, "replicas": logs, "largest_step": step, "weight_diff": diff}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def runs() -> dict:
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


TELEMETRY = ("loss", "uniform_loss", "uniform_gap", "buyer_grad_norm_mean", "product_grad_norm_max", "examples")


@pytest.mark.parametrize("logq", [False, True])
def test_two_replicas_have_the_single_device_loss_gradients_and_telemetry(runs, logq):
    run = runs[f"logq={logq} cross_replica=True"]
    single, replicas = run["single"], run["replicas"]
    for key in TELEMETRY:  # the gap is a difference of two losses: float32 rounding of theirs, absolutely
        assert replicas[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
    if not logq:  # the global batch's uniform-score loss: log 64 for 64 rows, log 7 for the last 7
        assert single["uniform_loss"] == pytest.approx((64 * math.log(64) + 7 * math.log(7)) / 71, rel=1e-6)
    # SGD at learning rate 1 moves every weight by its gradient: equal weights after two steps
    # (the last one split 4 + 3) mean equal gradients on every step
    assert run["largest_step"] > 1e-2
    assert run["weight_diff"] < 1e-6 * run["largest_step"]  # float32 rounding of the step, no more


@pytest.mark.parametrize("logq", [False, True])
def test_per_replica_negatives_the_tfrs_default_would_change_the_loss(runs, logq):
    run = runs[f"logq={logq} cross_replica=False"]
    assert run["replicas"]["loss"] < run["single"]["loss"] - 0.1  # half the negatives: an easier softmax
    assert run["weight_diff"] > 1e-3 * run["largest_step"]
