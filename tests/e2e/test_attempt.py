"""One training attempt end to end on tiny synthetic-retail data: collapse, success, divergence,
resume after an interruption, and the exported index used from a fresh process."""

import json
import math
import os
import re
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

import trainer  # noqa: F401  (tf-keras before TensorFlow)

from trainer.attempt import WorkdirTaken, _Progress, load_result, run_attempt
from trainer.gradients import EpochMetrics
from trainer.data import load_table
from trainer.evaluation import evaluate_model
from trainer.spec import spec_from_dict

DATA = "synthetic-retail://{table}?customers=300&products=60&transactions=8000&clusters=4&seed=3"
HIGH_LR = 3.0  # collapses this deep buyer tower (measured: loss 7.7e4 at epoch 1, uniform from epoch 3, norms ~0.05)
SAFE_LR = 0.1  # trains it (lr 1.0 is chaotic: one CPU collapsed at epoch 3-4, another came back to 6.477 ~ uniform)


def _spec(epochs: int = 5, clipnorm: float | None = 1.0, ks=(5, 10, 20)):
    return spec_from_dict(_raw_spec(epochs, clipnorm, ks))


def _raw_spec(epochs: int, clipnorm: float | None, ks, **training) -> dict:
    return {
            "name": "tiny-retail",
            "data": {
                "transactions": DATA.format(table="transactions"),
                "products": DATA.format(table="products"),
                "split": {"strategy": "random", "test_fraction": 0.2, "seed": 1},
            },
            "buyer_features": [
                {"column": "customer_id", "type": "id", "embedding_dim": 16},
                {"column": "region", "type": "categorical", "embedding_dim": 4},
                {"column": "customer_age", "type": "numeric"},
            ],
            "product_features": [
                {"column": "product_id", "type": "id", "embedding_dim": 16, "is_primary_id": True},
                {"column": "category", "type": "categorical"},
                {"column": "description", "type": "text", "embedding_dim": 8},
            ],
            "model": {
                "output_dim": 32,
                "buyer_layers": [{"units": 256}, {"units": 128}, {"units": 64}, {"units": 32}],
                "product_layers": [{"units": 64}, {"units": 32}],
            },
            "training": {
                "optimizer": "adagrad", "clipnorm": clipnorm, "epochs": epochs, "batch_size": 512, "seed": 42,
                "collapse": {"patience": 2}, **training,
            },  # fmt: skip
            "evaluation": {"ks": list(ks)},
        }


def test_a_deep_tower_at_a_high_learning_rate_is_reported_collapsed_within_patience(tmp_path):
    result = run_attempt(_spec(), HIGH_LR, str(tmp_path))
    assert result.status == "collapsed" and result.model_uri is None
    assert result.epochs_run < 5  # stopped early
    last = result.epochs[-2:]  # the patience window: loss/example = the uniform-score loss on every step
    assert all(m.uniform_gap < 1e-3 and m.loss == pytest.approx(m.uniform_loss, abs=1e-3) for m in last)
    assert all(m.buyer_grad_norm_mean > 1e-7 for m in last)  # the post-mortem's norm rule would not fire
    uniform = f"{last[-1].uniform_loss:.3f}"
    assert result.reason.startswith(f"collapsed at epoch {result.epochs_run}: loss/example {uniform} = the uniform")
    assert load_result(str(tmp_path)) == result


def test_the_same_at_a_safe_learning_rate_trains_and_beats_popularity(tmp_path):
    spec = _spec(epochs=3)
    result = run_attempt(spec, SAFE_LR, str(tmp_path))
    assert result.status == "succeeded", result.reason
    assert result.epochs[-1].loss < result.epochs[0].loss < result.epochs[0].uniform_loss
    evaluation = evaluate_model(spec, result.model_uri)
    assert evaluation.n_candidates == 60 and evaluation.n_queries > 0 and evaluation.n_pairs >= evaluation.n_queries
    for k in (5, 10, 20):
        assert evaluation.model[k] > evaluation.popularity[k] + 0.1, (k, evaluation)
    assert evaluation.ease is None  # not asked for

    def evaluated_with_ease(max_candidates: int):
        raw = _raw_spec(3, 1.0, (5, 10, 20))
        raw["evaluation"].update(baselines=["popularity", "ease"], ease_max_candidates=max_candidates)
        return evaluate_model(spec_from_dict(raw), result.model_uri)

    with_ease = evaluated_with_ease(60)
    assert (with_ease.model, with_ease.popularity) == (evaluation.model, evaluation.popularity)
    assert all(with_ease.ease[k] > with_ease.popularity[k] for k in (5, 10, 20)), with_ease  # planted clusters
    assert evaluated_with_ease(59).ease is None  # a catalogue of 60 is over that limit


def test_a_non_finite_loss_is_reported_diverged(tmp_path):
    result = run_attempt(_spec(clipnorm=None), 1e30, str(tmp_path))
    assert result.status == "diverged" and result.epochs_run == 1
    assert result.epochs[0].nonfinite_steps > 0 and not math.isfinite(result.epochs[0].loss)
    assert result.reason.startswith("diverged at epoch 1: non-finite loss or gradient")


class Interrupted(Exception):
    pass


def interrupt_after(epoch: int, spec, workdir: str) -> None:
    """Run an attempt at lr 0.1 and stop it, as a kill would, once `epoch` is checkpointed."""

    def stop(metrics):
        if metrics.epoch == epoch:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_attempt(spec, 0.1, workdir, on_epoch=stop)


def test_early_stopping_stops_when_validation_loss_stops_improving_and_keeps_the_best_epoch():
    spec = spec_from_dict(_raw_spec(10, 1.0, (5,), early_stopping_patience=2))
    progress = _Progress(spec)
    for epoch, val_loss in enumerate([3.0, 2.0, 2.5, 2.1], start=1):
        assert not progress.finished
        progress.record(EpochMetrics(
            epoch=epoch, loss=5.0, steps=2, examples=64, buyer_grad_norm_mean=1.0, buyer_grad_norm_max=1.0,
            product_grad_norm_mean=1.0, product_grad_norm_max=1.0, nonfinite_steps=0, seconds=0.1,
            learning_rate=0.1, val_loss=val_loss, uniform_gap=1.0, uniform_loss=6.0,
        ))  # fmt: skip
    assert progress.early_stopped and progress.finished and progress.best.epoch == 2
    assert progress.detector.verdict is None


def test_an_interrupted_attempt_resumes_after_its_last_finished_epoch(tmp_path):
    spec = spec_from_dict(_raw_spec(4, 1.0, (5, 10), validation_fraction=0.1))
    workdir = str(tmp_path / "attempt")

    interrupt_after(2, spec, workdir)
    assert load_result(workdir) is None
    resumed_epochs: list[int] = []
    result = run_attempt(spec, 0.1, workdir, on_epoch=lambda m: resumed_epochs.append(m.epoch))
    assert resumed_epochs == [3, 4]
    assert [m.epoch for m in result.epochs] == [1, 2, 3, 4] and result.epochs_run == 4
    assert result.status == "succeeded"
    assert result.epochs[2].loss < result.epochs[0].loss  # weights and optimizer state carried over
    assert all(m.val_loss is not None and math.isfinite(m.val_loss) for m in result.epochs)
    stored = json.loads((tmp_path / "attempt" / "checkpoints" / "epochs.json").read_text())
    assert [m["epoch"] for m in stored] == [1, 2, 3, 4]
    assert list((tmp_path / "attempt" / "tb").iterdir())  # TensorBoard event files
    assert run_attempt(spec, 0.1, workdir) == result  # finished: the stored result, nothing retrained
    with pytest.raises(ValueError, match="at learning rate 0.1, not spec .* at 0.01: use another workdir"):
        run_attempt(spec, 0.01, workdir)
    (tmp_path / "attempt" / "result.json").write_text('{"status": "succ')  # damaged on disk
    said, retrained = [], []
    again = run_attempt(spec, 0.1, workdir, on_epoch=retrained.append, say=said.append)
    assert any("result.json cannot be read (Invalid JSON" in line for line in said)
    assert not retrained and again.status == "succeeded" and again.epochs == result.epochs  # from the checkpoints
    assert load_result(workdir) == again  # written again
    (tmp_path / "attempt" / "attempt.json").write_text('{"spec')
    with pytest.raises(WorkdirTaken, match="attempt.json cannot be read .* whose attempt .* holds is unknown"):
        run_attempt(spec, 0.1, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("restart, resumed_at", [("last_healthy", 3), ("scratch", 1)])
def test_an_unreadable_checkpoint_is_set_aside_and_the_attempt_resumes_from_an_earlier_one_or_afresh(
    tmp_path, restart, resumed_at
):
    # last_healthy keeps collapse.patience + 1 = 3 checkpoints, scratch only the latest
    spec = spec_from_dict(_raw_spec(4, 1.0, (5, 10), backoff={"restart": restart}))
    workdir = tmp_path / "attempt"

    interrupt_after(3, spec, str(workdir))
    data = workdir / "checkpoints" / "ckpt-3.data-00000-of-00001"
    os.truncate(data, data.stat().st_size // 2)  # a write cut short
    said, epochs = [], []
    result = run_attempt(spec, 0.1, str(workdir), on_epoch=lambda m: epochs.append(m.epoch), say=said.append)
    fallback = "trying ckpt-2" if restart == "last_healthy" else "starting afresh"
    assert f"attempt: checkpoint ckpt-3 cannot be read (Read less bytes than requested): set aside; {fallback}" in said
    assert epochs == list(range(resumed_at, 5)) and result.status == "succeeded"
    assert [m.epoch for m in result.epochs] == [1, 2, 3, 4]
    assert (workdir / "checkpoints" / "unreadable-ckpt-3.data-00000-of-00001").exists()


@pytest.mark.slow
def test_checkpoints_trained_on_data_changed_since_are_set_aside_and_the_attempt_starts_afresh(tmp_path):
    rows = load_table(DATA.format(table="transactions"))[["customer_id", "product_id"]]
    data = tmp_path / "tx.csv"
    rows.iloc[:6000].to_csv(data, index=False)
    raw = _raw_spec(3, 1.0, (5, 10))
    raw["data"] = {"transactions": str(data), "split": {"strategy": "random", "test_fraction": 0.2, "seed": 1}}
    raw["buyer_features"], raw["product_features"] = raw["buyer_features"][:1], raw["product_features"][:1]
    spec, workdir = spec_from_dict(raw), str(tmp_path / "attempt")

    interrupt_after(2, spec, workdir)
    rows.to_csv(data, index=False)  # new rows since, with ids the checkpoints' vocabularies lack
    said, epochs = [], []
    result = run_attempt(spec, 0.1, workdir, on_epoch=lambda m: epochs.append(m.epoch), say=said.append)
    assert f"attempt: its checkpoints were trained on other data ({data} changed): set aside; starting afresh " \
           "on the data as it is now" in said
    assert epochs == [1, 2, 3] and result.status == "succeeded"
    assert (tmp_path / "attempt" / "checkpoints" / "other-data-ckpt-2.index").exists()


def test_an_ensemble_of_members_resumes_exports_their_embeddings_side_by_side_and_evaluates(tmp_path):
    raw = _raw_spec(2, 1.0, (5, 10))
    raw["model"] = {"output_dim": 16, "members": 2, "normalize": True, "temperature": 0.2,
                    "buyer_layers": [{"units": 16}], "product_layers": [{"units": 16}]}
    spec, workdir = spec_from_dict(raw), str(tmp_path / "attempt")

    interrupt_after(1, spec, workdir)
    result = run_attempt(spec, 0.1, workdir)
    assert result.status == "succeeded" and result.epochs[1].loss < result.epochs[0].loss  # both members resumed
    candidates = np.load(f"{result.model_uri}/candidate_embeddings.npy")
    assert candidates.shape[1] == 2 * 16
    np.testing.assert_allclose(np.linalg.norm(candidates[:, :16], axis=1), 1.0, rtol=1e-5)
    evaluation = evaluate_model(spec, result.model_uri)
    assert evaluation.model[10] > evaluation.popularity[10]


def test_a_model_too_big_for_memory_fails_the_attempt_in_one_line(tmp_path):
    raw = _raw_spec(1, 1.0, (5, 10))
    raw["buyer_features"][0]["embedding_dim"] = 10_000_000  # 300 ids x 1e7 floats: 12 GB, past the limit below
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump(raw))

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    command = [sys.executable, "-m", "trainer", "--config", str(config), "--out", str(tmp_path / "out")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180, preexec_fn=limit_memory)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert re.fullmatch(
        r"attempt: out of memory allocating a float tensor of shape \[\d+,10000000\] on \S+CPU:0; "
        r"lower embedding_dim, hash_buckets, the layers' units or batch_size",
        run.stderr.strip().splitlines()[-1],
    ), run.stderr[-2000:]


def test_the_exported_index_loads_in_a_fresh_process_and_returns_product_ids(tmp_path):
    result = run_attempt(_spec(epochs=1, ks=(5, 7)), 0.1, str(tmp_path))
    script = textwrap.dedent(
        f"""
        import json, trainer, tensorflow as tf
        loaded = tf.saved_model.load({result.model_uri + "/saved_model"!r})
        out = loaded.signatures["serving_default"](
            customer_id=tf.constant(["c00095", "nobody"]), region=tf.constant(["region_00", ""]),
            customer_age=tf.constant([30.0, float("nan")]))
        print(json.dumps({{"ids": out["product_ids"].numpy().astype(str).tolist(),
                          "scores": out["scores"].numpy().tolist()}}))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    candidate_ids = set(np.load(f"{result.model_uri}/candidate_ids.npy").tolist())
    assert len(out["ids"]) == 2 and all(len(row) == 7 for row in out["ids"])  # k = max(ks)
    assert all(pid in candidate_ids for row in out["ids"] for pid in row)
    assert all(row == sorted(row, reverse=True) for row in out["scores"])


def test_columns_named_as_people_name_them_train_export_and_evaluate(tmp_path):
    """`customer id/ü`, `prodüct:id`: TensorFlow refuses such names for layers and signature arguments (the
    attempt ended in "not a valid scope name"); they are spelled by graph_name, and the data keeps its names."""
    from trainer.datasets import load_builtin

    names = {"customer_id": "customer id/ü", "product_id": "prodüct:id", "region": "région"}
    rows = load_builtin(DATA.format(table="transactions"))[list(names)].rename(columns=names)
    rows.to_parquet(tmp_path / "tx.parquet")
    raw = _raw_spec(3, 1.0, (5, 10))
    raw["model"] = {"output_dim": 16, "buyer_layers": [{"units": 16}], "product_layers": [{"units": 16}]}
    raw["data"] = {"transactions": str(tmp_path / "tx.parquet"), "split": {"strategy": "random", "test_fraction": 0.2}}
    raw["buyer_features"] = [{"column": names["customer_id"], "type": "id"}, {"column": names["region"]}]
    raw["product_features"] = [{"column": names["product_id"], "type": "id", "is_primary_id": True}]
    spec = spec_from_dict(raw)
    result = run_attempt(spec, SAFE_LR, str(tmp_path / "attempt"))
    assert result.status == "succeeded", result.reason
    evaluation = evaluate_model(spec, result.model_uri)
    assert sorted(evaluation.model) == [5, 10] and evaluation.n_queries > 0
    from trainer.model import graph_name

    assert graph_name("customer_id") == "customer_id" and graph_name("région") != graph_name("r gion")
    assert re.fullmatch(r"customer_id_[0-9a-f]{6}", graph_name(names["customer_id"]))


def test_the_command_line_runs_one_attempt_and_evaluates_it(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_raw_spec(epochs=1, clipnorm=1.0, ks=(5, 10))))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trainer", "--config", str(config), "--learning-rate", "0.1", "--out", str(out)]
    run = subprocess.run([*command, "--evaluate"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "epoch 1: loss/example" in run.stdout and "succeeded: trained 1 epochs" in run.stdout
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert f"recall@10: model {evaluation['model']['10']:.4f}" in run.stdout
    assert json.loads((out / "result.json").read_text())["status"] == "succeeded"
    bad = subprocess.run([*command[:4], str(tmp_path / "missing.yaml"), *command[5:]], capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid config" in bad.stderr and "file not found" in bad.stderr
    taken = subprocess.run([*command[:6], "0.05", *command[7:]], capture_output=True, text=True, timeout=180)
    assert taken.returncode == 1 and "Traceback" not in taken.stderr, taken.stderr[-2000:]
    assert re.fullmatch(rf"{re.escape(str(out))} holds an attempt of spec \w+ at learning rate 0.1, "
                        r"not spec \w+ at 0.05: use another workdir", taken.stderr.strip().splitlines()[-1])
    raw = _raw_spec(epochs=1, clipnorm=1.0, ks=(5, 10))
    raw["data"]["transactions"] = str(tmp_path / "gone.csv")
    config.write_text(yaml.safe_dump(raw))
    no_data = subprocess.run([*command[:8], str(tmp_path / "other")], capture_output=True, text=True, timeout=180)
    assert no_data.returncode == 1 and "Traceback" not in no_data.stderr, no_data.stderr[-2000:]
    assert no_data.stderr.strip().splitlines()[-1] == f"{tmp_path / 'gone.csv'}: file not found"


def test_a_rollback_retry_starts_from_the_earlier_attempts_checkpoint_at_the_lower_rate(tmp_path):
    from trainer.results import StartPoint

    spec = spec_from_dict(_raw_spec(4, 1.0, (5, 10, 20), backoff={"restart": "last_healthy"}))
    first = run_attempt(spec.with_learning_rate(0.1), 0.1, str(tmp_path / "attempt-1"))
    start = StartPoint(attempt=1, epoch=2, workdir=first.workdir)  # kept: patience 2 keeps 3 checkpoints
    lines: list[str] = []
    retry = run_attempt(spec, 0.01, str(tmp_path / "attempt-2"), start=start, say=lines.append)
    assert retry.status == "succeeded" and retry.start == start and retry.epochs_run == 4
    assert retry.epochs[:2] == first.epochs[:2]  # inherited, at the earlier rate
    assert [m.learning_rate for m in retry.epochs[2:]] == pytest.approx([0.01, 0.01])
    assert retry.epochs[2].loss < first.epochs[1].loss  # from epoch 2's weights (fresh ones start near uniform)
    assert lines == ["attempt starts from attempt 1's epoch 2 (its last healthy one)"]
    assert retry.reason.startswith("started from attempt 1's epoch 2; trained 4 epochs")
    (tmp_path / "attempt-1" / "checkpoints" / "data.json").write_text('[["tx.csv", 1024, "mtime=1.0"]]')
    lines.clear()  # as if the data had changed since attempt 1: its weights fit other vocabularies
    fresh = run_attempt(spec, 0.003, str(tmp_path / "attempt-3"), start=start, say=lines.append)
    assert lines == ["attempt: attempt 1's epoch 2 checkpoint is gone, unreadable or trained on other data; "
                     "starting afresh"]
    assert fresh.start is None and fresh.status == "succeeded"


def test_a_streamed_attempt_trains_and_evaluates_as_one_in_memory_does(tmp_path):
    """Parquet shards read as a stream: the same split, candidates and baselines as in memory, and a
    model as good; exclude_seen and EASE read the training pairs back from the shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.datasets import load_builtin

    rows = load_builtin(DATA.format(table="transactions"))
    (tmp_path / "tx").mkdir()
    for i, start in enumerate(range(0, len(rows), 3000)):
        part = pa.Table.from_pandas(rows.iloc[start : start + 3000], preserve_index=False)
        pq.write_table(part, tmp_path / "tx" / f"part-{i}.parquet", row_group_size=1000)

    def attempt(streaming: bool):
        raw = _raw_spec(3, 1.0, (5, 10, 20))
        raw["data"].update(transactions=str(tmp_path / "tx"), split={"strategy": "hash", "test_fraction": 0.2},
                           streaming=streaming)
        raw["evaluation"].update(exclude_seen=True, baselines=["popularity", "ease"])
        spec = spec_from_dict(raw)
        result = run_attempt(spec, SAFE_LR, str(tmp_path / f"streaming-{streaming}"))
        assert result.status == "succeeded", result.reason
        return evaluate_model(spec, result.model_uri)

    streamed, in_memory = attempt(True), attempt(False)
    assert (streamed.n_queries, streamed.n_pairs, streamed.n_candidates) == (
        in_memory.n_queries, in_memory.n_pairs, in_memory.n_candidates)
    assert streamed.popularity == in_memory.popularity and streamed.ease == in_memory.ease
    for k in (5, 10, 20):
        assert streamed.model[k] > streamed.popularity[k] + 0.1, (k, streamed)
        assert streamed.model[k] == pytest.approx(in_memory.model[k], abs=0.1)


def test_the_command_line_streams_with_the_pass_kept_in_its_workdir(tmp_path):
    raw = _raw_spec(epochs=1, clipnorm=1.0, ks=(5, 10))
    raw["data"].update(streaming=True, split={"strategy": "hash", "test_fraction": 0.2})
    config = tmp_path / "streamed.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trainer", "--config", str(config), "--learning-rate", "0.1", "--out", str(out)]
    run = subprocess.run([*command, "--evaluate"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "recall@10: model" in run.stdout
    assert list(out.rglob("manifest.json")) == [out / "scan" / "manifest.json"]  # one pass, reused by evaluation

    raw["data"].update(transactions=str(tmp_path / "shards" / "*.parquet"))
    config.write_text(yaml.safe_dump(raw))
    empty = subprocess.run([*command[:-1], str(tmp_path / "other")], capture_output=True, text=True, timeout=180)
    assert empty.returncode == 1 and "Traceback" not in empty.stderr, empty.stderr[-2000:]
    assert "shards/*.parquet" in empty.stderr.strip().splitlines()[-1]
