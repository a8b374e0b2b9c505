"""One training attempt, end to end: data -> model -> epochs with telemetry -> verdict -> export.

Everything an attempt writes lives under its `workdir`, a local path or a URI (gs://), through
trainer.storage. TensorFlow writes checkpoints, scalars and the SavedModel to a local directory: the
workdir itself when local, else a staging directory pushed to the workdir after each epoch and at
export (each checkpoint's files before the `checkpoint` index, so a kill mid-push leaves the previous
checkpoint the latest one); a resumed attempt first pulls the checkpoints. The workdir holds:
  checkpoints/   one checkpoint per epoch: model, optimizer, epoch counter and the EpochMetrics so
                 far (inside the checkpoint, so they can never disagree); epochs.json beside it, and
                 data.json, the fingerprints of the data files they were trained on (a resume on
                 files changed since sets them aside and starts afresh)
  tb/            TensorBoard scalars per epoch (loss, per-tower gradient norms, learning rate)
  model/         on success: saved_model/ (query tower + BruteForce index; signatures
                 `serving_default` -> {scores, product_ids} and `embed_buyers` -> {embeddings}),
                 candidate_embeddings.npy and candidate_ids.npy
  attempt.json   the spec hash and learning rate the workdir belongs to
  result.json    the AttemptResult
Run again with the same workdir after being killed, an attempt resumes after its last finished
epoch (and reports every epoch); run again after it finished, it returns the stored result.

On several machines (TF_CONFIG names a cluster of more than one worker, trainer.cluster) every
worker runs this same function under MultiWorkerMirroredStrategy: each reads the same data, the
strategy shards every global batch of `training.batch_size` over the replicas, and all of them
restore from the workdir's checkpoints. Only the chief writes the workdir; the others write their
checkpoints, scalars and export to a temporary local directory (collective ops need every worker to
save) that is removed afterwards, and return the same result.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from trainer.cluster import Cluster, cluster_from_env
from trainer.datacheck import check_loaded, raise_for_errors
from trainer.errors import ExpectedError, NoSpaceLeft, OutOfMemory
from trainer.gradients import CollapseDetector, EpochMetrics, EpochMonitor
from trainer.memory import keep_less_freed_memory, release_freed_memory
from trainer.model import (
    TwoTowerModel, Tower, build_model, build_optimizer, embed, jit_compile, make_dataset, model_columns,
)
from trainer.results import EPOCHS_FILE, AttemptResult, StartPoint  # defined without TensorFlow; importable from here
from trainer.scanned import data_fingerprints, experiment_data, workdir_scan
from trainer.spec import ExperimentSpec, TrainingSpec
from trainer.storage import (
    Mirror, Unreachable, download, exists, join, local_copy, makedirs, mirrored, read_bytes, write_bytes,
)
from trainer.stream_input import read_failures_named, training_batches

RESULT_FILE = "result.json"
ATTEMPT_FILE = "attempt.json"
EXPORT_DIR = "model"
SAVED_MODEL_DIR = "saved_model"
CANDIDATE_EMBEDDINGS = "candidate_embeddings.npy"
CANDIDATE_IDS = "candidate_ids.npy"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_INDEX = f"{CHECKPOINTS_DIR}/checkpoint"  # tf.train.CheckpointManager's index of the kept checkpoints
DATA_FILE = f"{CHECKPOINTS_DIR}/data.json"  # the fingerprints of the data they were trained on (trainer.scanned)

EpochCallback = Callable[[EpochMetrics], None]
STEPS_PER_EXECUTION = 16
"""Train steps per call into the compiled loop: the callbacks only read epochs, and one Python round
trip per step cost ~10 % of the examples per CPU second (bench/bench_trainer.py). One worker only:
under MultiWorkerMirroredStrategy tf-keras' multi-step loop gets the workers' collectives out of step
(a 128-row gather meets a 256-row one)."""


def distribution_strategy(cluster: Cluster = Cluster(), gpus_per_worker: int = 0) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when `cluster` has several workers; else MirroredStrategy over the
    visible GPUs when there are several; else the default strategy. `gpus_per_worker` > 0 uses only
    the first that many GPUs. Call it before any other TensorFlow op: a multi-worker strategy (and
    hiding GPUs) configures the runtime, which cannot change once it has started."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus_per_worker:
        if len(gpus) < gpus_per_worker:
            raise ValueError(f"training.gpus_per_worker is {gpus_per_worker} but this machine shows {len(gpus)} GPUs")
        if len(gpus) > gpus_per_worker:
            gpus = gpus[:gpus_per_worker]
            tf.config.set_visible_devices(gpus, "GPU")
    if cluster.workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def training_cluster(training: TrainingSpec) -> Cluster:
    """This process's Cluster (TF_CONFIG), refused when it does not have `training.workers` workers: a
    launcher that forgot TF_CONFIG would otherwise start that many chiefs writing one workdir."""
    cluster = cluster_from_env()
    if cluster.workers != training.workers:
        named = f"TF_CONFIG names {cluster.workers}" if os.environ.get("TF_CONFIG") else "there is no TF_CONFIG"
        raise ValueError(
            f"training.workers is {training.workers} but {named}: launch it on a multi-worker pool "
            f"(deployments/README.md) or set training.workers: {cluster.workers}"
        )
    return cluster


def sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` split by data across workers: each global batch is cut into per-replica pieces."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def use_mixed_precision_if_gpu() -> bool:
    """mixed_float16 when a GPU is visible (towers still output float32); never on CPU."""
    if tf.config.list_physical_devices("GPU"):
        tf_keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    return False


class _Progress:
    """The epochs so far and what they imply: the collapse verdict and the early-stopping state.

    Built by replaying epochs, so a resumed attempt decides exactly as an uninterrupted one.
    """

    def __init__(self, spec: ExperimentSpec):
        self.spec = spec
        self.detector = CollapseDetector(spec.training.collapse, spec.training.batch_size)
        self.epochs: list[EpochMetrics] = []
        self.best: EpochMetrics | None = None

    def record(self, metrics: EpochMetrics) -> None:
        self.epochs.append(metrics)
        self.detector.observe(metrics)
        val = metrics.val_loss
        if val is not None and math.isfinite(val) and (self.best is None or val < self.best.val_loss):
            self.best = metrics

    @property
    def early_stopped(self) -> bool:
        patience = self.spec.training.early_stopping_patience
        if patience is None or self.best is None or not self.epochs:
            return False
        return self.epochs[-1].epoch - self.best.epoch >= patience

    @property
    def finished(self) -> bool:
        done = bool(self.epochs) and self.epochs[-1].epoch >= self.spec.training.epochs
        return done or self.detector.verdict is not None or self.early_stopped


def _epoch_handler(
    progress: _Progress, checkpoints: _Checkpoints, writer, mirror: Mirror, on_epoch: EpochCallback | None
) -> Callable[[EpochMetrics], bool]:
    """After each epoch, in this order: verdict, checkpoint (+ epochs.json), TensorBoard, push to the
    workdir (the index last), `on_epoch`; returns whether the attempt is finished (so training stops)."""

    def handle(metrics: EpochMetrics) -> bool:
        progress.record(metrics)
        checkpoints.save(progress.epochs)
        _write_scalars(writer, metrics)
        mirror.push(last=(CHECKPOINT_INDEX, EPOCHS_FILE))
        if on_epoch is not None:
            on_epoch(metrics)
        return progress.finished

    return handle


def _write_scalars(writer, metrics: EpochMetrics) -> None:
    values = {
        "loss_per_example": metrics.loss,
        "grad_norm/buyer_mean": metrics.buyer_grad_norm_mean,
        "grad_norm/buyer_max": metrics.buyer_grad_norm_max,
        "grad_norm/product_mean": metrics.product_grad_norm_mean,
        "grad_norm/product_max": metrics.product_grad_norm_max,
        "learning_rate": metrics.learning_rate,
        "uniform_gap": metrics.uniform_gap,
        "val_loss_per_example": metrics.val_loss,
    }
    with writer.as_default():
        for name, value in values.items():
            if value is not None:
                tf.summary.scalar(name, value, step=metrics.epoch)
    writer.flush()


class _Checkpoints:
    """Per-epoch checkpoints of model + optimizer + epoch counter + EpochMetrics (JSON) in a local `directory`."""

    def __init__(self, model: TwoTowerModel, directory: str, max_to_keep: int):
        self.model = model
        self.directory = directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch, history=self.history
        )
        self.max_to_keep = max_to_keep
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)

    def restore(self, say: Callable[[str], None], data: list[list]) -> list[EpochMetrics]:
        """Restore the latest checkpoint that reads whole (if any) and return its EpochMetrics. One that does
        not (a corrupt or cut-short file) is named, set aside as `unreadable-*` and an earlier kept one tried;
        with none left the attempt starts afresh: an unreadable checkpoint costs epochs, never the attempt.
        Checkpoints trained on other data than `data` (its fingerprints: the files changed since) are set
        aside as `other-data-*` and the attempt starts afresh: its vocabularies are other ones now."""
        data_file = os.path.join(self.directory, os.path.basename(DATA_FILE))
        try:
            trained_on = json.loads(Path(data_file).read_text())
        except (OSError, ValueError):  # none yet (or damaged): nothing says the data changed
            trained_on = data
        if trained_on != data and self.manager.checkpoints:
            say(f"its checkpoints were trained on other data ({_data_change(trained_on, data)}): "
                "set aside; starting afresh on the data as it is now")
            for prefix in self.manager.checkpoints:
                _set_aside(prefix, "other-data")
            self._forget_all_but([])
        os.makedirs(self.directory, exist_ok=True)
        Path(data_file).write_text(json.dumps(data))
        kept = list(self.manager.checkpoints)
        while kept:
            prefix = kept.pop()
            problem = unreadable(prefix)
            if problem is None:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
                raw = json.loads(self.history.numpy().decode())
                return [EpochMetrics.model_validate(item) for item in raw]
            fallback = f"trying {os.path.basename(kept[-1])}" if kept else "starting afresh"
            say(f"checkpoint {os.path.basename(prefix)} cannot be read ({problem}): set aside; {fallback}")
            _set_aside(prefix, "unreadable")
            self._forget_all_but(kept)
        return []

    def _forget_all_but(self, kept: list[str]) -> None:
        """Rewrite the checkpoint index to list only `kept` (the last the latest; names relative, as the manager
        writes them, so a pushed index holds in any staging directory) and read it again."""
        if kept:
            names = [os.path.basename(prefix) for prefix in kept]
            tf.compat.v1.train.update_checkpoint_state(self.directory, names[-1], all_model_checkpoint_paths=names)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.directory, os.path.basename(CHECKPOINT_INDEX)))
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.max_to_keep)

    def save(self, epochs: list[EpochMetrics]) -> None:
        text = json.dumps([m.model_dump(mode="json") for m in epochs])
        self.epoch.assign(len(epochs))
        self.history.assign(text)
        self.manager.save(checkpoint_number=epochs[-1].epoch)
        with open(os.path.join(self.directory, os.path.basename(EPOCHS_FILE)), "w") as handle:
            handle.write(text)

    def restore_weights(self, epoch: int) -> None:
        """Load the tower weights of `epoch` (its checkpoint must still be kept)."""
        restore_towers(self.model, os.path.join(self.directory, f"ckpt-{epoch}"))


def unreadable(prefix: str) -> str | None:
    """Why the checkpoint at `prefix` cannot be read whole (each tensor read, its checksum checked), or None."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError) as error:  # IndexError: a data file cut short
        return str(error).strip().splitlines()[0]
    return None


def _set_aside(prefix: str, why: str) -> None:
    """Rename the files of the checkpoint at `prefix` to `<why>-<name>...`, kept for a look, never restored."""
    directory, name = os.path.split(prefix)
    for entry in os.listdir(directory):
        if entry.startswith(f"{name}."):
            os.replace(os.path.join(directory, entry), os.path.join(directory, f"{why}-{entry}"))


def _data_change(before: list[list], now: list[list]) -> str:
    """Which of the data's files changed, came or went (the first found), from their fingerprints."""
    old, new = {entry[0]: entry for entry in before}, {entry[0]: entry for entry in now}
    for file, entry in new.items():
        if file not in old:
            return f"{file} is new"
        if old[file] != entry:
            return f"{file} changed"
    return f"{next(file for file in old if file not in new)} is gone"


def restore_towers(model: TwoTowerModel, prefix: str) -> None:
    """Load the buyer and product towers (every trained weight) from the checkpoint at `prefix`; the
    optimizer stays as it is."""
    towers = tf.train.Checkpoint(buyer=model.buyer, product=model.product)
    tf.train.Checkpoint(model=towers).restore(prefix).expect_partial()


class ServingModule(tf.Module):
    """The exported query side: the buyer tower and a BruteForce index over candidate embeddings."""

    def __init__(self, tower: Tower, index: tfrs.layers.factorized_top_k.BruteForce):
        super().__init__()
        self.tower = tower
        self.index = index
        signature = [tower.input_signature()]
        self.recommend = tf.function(self._recommend, input_signature=signature)
        self.embed_buyers = tf.function(self._embed_buyers, input_signature=signature)

    def _recommend(self, features):
        scores, product_ids = self.index(features)
        return {"scores": scores, "product_ids": product_ids}

    def _embed_buyers(self, features):
        return {"embeddings": self.tower(features)}


@contextlib.contextmanager
def _quiet_get_config_warning():
    """Drop tf-keras' "implement a `get_config()`" warning, repeated per layer on every export: the
    SavedModel is used through its signatures and is never rebuilt from Keras configs."""

    def keep(record: logging.LogRecord) -> bool:
        return "get_config()" not in record.getMessage()

    logger = logging.getLogger("tensorflow")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def export_model(model: TwoTowerModel, spec: ExperimentSpec, candidates: pd.DataFrame, export_dir: str) -> str:
    """Write the SavedModel (query tower + BruteForce index) and the embeddings + ids of `candidates`
    (one row per product) to the local directory `export_dir`; return it."""
    product_column = spec.product_id_column
    candidate_ids = candidates[product_column].astype(str).to_numpy()
    embeddings = embed(model.product, candidates)
    k = min(max(spec.evaluation.ks), len(candidate_ids))
    index = tfrs.layers.factorized_top_k.BruteForce(model.buyer, k=k)
    index.index(tf.constant(embeddings), tf.constant(candidate_ids))
    module = ServingModule(model.buyer, index)
    signatures = {"serving_default": module.recommend, "embed_buyers": module.embed_buyers}
    with _quiet_get_config_warning():
        tf.saved_model.save(module, os.path.join(export_dir, SAVED_MODEL_DIR), signatures=signatures)
    np.save(os.path.join(export_dir, CANDIDATE_EMBEDDINGS), embeddings, allow_pickle=False)
    np.save(os.path.join(export_dir, CANDIDATE_IDS), candidate_ids.astype(str), allow_pickle=False)
    return export_dir


def _success_reason(progress: _Progress) -> str:
    epochs = progress.epochs
    first, last = epochs[0], epochs[-1]
    reason = f"trained {len(epochs)} epochs: loss/example {first.loss:.3f} -> {last.loss:.3f}"
    if last.uniform_loss is not None:
        reason += f" (uniform scores: {last.uniform_loss:.3f})"
    if progress.early_stopped:
        patience = progress.spec.training.early_stopping_patience
        reason += (
            f"; early stopped: val loss/example not improved for {patience} epochs, "
            f"exported epoch {progress.best.epoch} (val {progress.best.val_loss:.3f})"
        )
    return reason


class WorkdirTaken(ExpectedError, ValueError):
    """The workdir holds another attempt (another spec, learning rate or start point)."""


def claim_workdir(
    workdir: str, spec: ExperimentSpec, learning_rate: float, write: bool = True, start: StartPoint | None = None
) -> None:
    """Record which spec, learning rate (and start point) `workdir` belongs to; refuse one that
    belongs to another, so an attempt never resumes (or returns) someone else's checkpoints or
    result. `write=False` (a non-chief worker) only checks a record that is already there."""
    identity: dict = {"spec_hash": spec.content_hash(), "learning_rate": learning_rate}
    if start is not None:
        identity["start"] = {"attempt": start.attempt, "epoch": start.epoch}
    path = join(workdir, ATTEMPT_FILE)
    if exists(path):
        try:
            found = json.loads(read_bytes(path))
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:  # damaged on disk (it is written whole): whose checkpoints these are is unknown
            raise WorkdirTaken(
                f"{path} cannot be read ({error}), so whose attempt {workdir} holds is unknown: "
                "remove that workdir (its checkpoints are then lost) or use another"
            ) from None
        if found != identity:
            raise WorkdirTaken(
                f"{workdir} holds an attempt of spec {found.get('spec_hash')} at learning rate "
                f"{found.get('learning_rate')}, not spec {identity['spec_hash']} at {learning_rate}: use another workdir"
            )
        return
    if write:
        makedirs(workdir)
        write_bytes(path, json.dumps(identity).encode())


@contextlib.contextmanager
def _writable(workdir: str, cluster: Cluster) -> Iterator[Mirror]:
    """Where this worker writes, with the workdir's checkpoints in it: for the chief a Mirror of the
    workdir; for any other worker a temporary local directory that is never pushed and is removed."""
    if cluster.is_chief:
        with mirrored(workdir) as mirror:
            mirror.pull(CHECKPOINTS_DIR)
            yield mirror
        return
    scratch = tempfile.mkdtemp(prefix=f"towerflow-{cluster.task_type}-{cluster.task_index}-")
    try:
        if exists(join(workdir, CHECKPOINTS_DIR)):
            download(join(workdir, CHECKPOINTS_DIR), os.path.join(scratch, CHECKPOINTS_DIR))
        yield Mirror(scratch, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_result(workdir: str, say: Callable[[str], None] | None = None) -> AttemptResult | None:
    """The stored result of a finished attempt in `workdir`, if any. One that cannot be read (damaged on
    disk: it is written whole) counts as none, said through `say`: the attempt's checkpoints give it again."""
    path = join(workdir, RESULT_FILE)
    if not exists(path):
        return None
    try:
        return AttemptResult.model_validate_json(read_bytes(path))
    except pydantic.ValidationError as error:
        if say is not None:
            problem = error.errors()[0]["msg"]
            say(f"{path} cannot be read ({problem}): continuing from the checkpoints, which give the result again")
        return None


def _start_from(model: TwoTowerModel, start: StartPoint, progress: _Progress, data: list[list]) -> bool:
    """Load the model weights of `start` (its epoch's checkpoint in the earlier attempt's workdir) and
    take that attempt's epochs up to it as this one's first; False when that checkpoint is gone, unreadable,
    or was trained on other data than `data` (the data's fingerprints now)."""
    source = load_result(start.workdir)
    checkpoint = join(start.workdir, CHECKPOINTS_DIR, f"ckpt-{start.epoch}.index")
    if source is None or not exists(checkpoint):
        return False
    trained_on = join(start.workdir, DATA_FILE)
    if exists(trained_on) and json.loads(read_bytes(trained_on)) != data:
        return False
    name = f"ckpt-{start.epoch}"
    with local_copy(join(start.workdir, CHECKPOINTS_DIR), only=f"{name}.") as local:
        if unreadable(os.path.join(local, name)) is not None:
            return False
        restore_towers(model, os.path.join(local, name))  # not the optimizer: this attempt's is fresh
    for metrics in source.epochs[: start.epoch]:
        progress.record(metrics)
    return True


def checkpoints_to_keep(training: TrainingSpec) -> int:
    """Checkpoints kept per attempt: the best epoch's for early stopping, and with rollback restarts
    the last healthy one's (up to `patience` epochs before a collapse is called)."""
    keep = (training.early_stopping_patience or 0) + 1
    if training.backoff.restart == "last_healthy":
        keep = max(keep, training.collapse.patience + 1)
    return keep


OOM_TENSOR = re.compile(r"OOM when allocating tensor with shape(\[[^\]]*\]) and type (\w+)(?: on (\S+))?")
NO_SPACE = "No space left on device"  # TensorFlow reports a full disk as resource exhaustion too
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _failures_named(name: str, workdir: str) -> Iterator[None]:
    """Turn TensorFlow's ResourceExhaustedError (a multi-line dump) into one line: OutOfMemory, or
    NoSpaceLeft when a write found the disk full (TensorFlow's checkpoint or Python's own files); say
    what to do when the workdir's storage endpoint stopped answering."""
    try:
        yield
    except tf.errors.ResourceExhaustedError as error:
        if NO_SPACE in error.message:
            raise NoSpaceLeft.writing(f"{name}: cannot write {workdir}", NO_SPACE) from None
        found = OOM_TENSOR.search(error.message)
        tensor = f" allocating a {found[2]} tensor of shape {found[1]}" if found else ""
        tensor += f" on {found[3]}" if found and found[3] else ""
        raise OutOfMemory(
            f"{name}: out of memory{tensor}; lower embedding_dim, hash_buckets, the layers' units or batch_size"
        ) from None
    except Unreachable as error:
        raise Unreachable(f"{name}: {error}; run the same config again once it answers: it continues from the "
                          "last checkpoint") from None
    except OSError as error:
        if error.errno not in NO_SPACE_ERRNOS:
            raise
        raise NoSpaceLeft.writing(f"{name}: cannot write {workdir}", os.strerror(error.errno)) from None


def run_attempt(
    spec: ExperimentSpec, learning_rate: float, workdir: str, on_epoch: EpochCallback | None = None,
    say: Callable[[str], None] | None = None, name: str = "attempt", start: StartPoint | None = None,
    scan: str | None = None,
) -> AttemptResult:
    """Train `spec` at `learning_rate` in `workdir` until success, collapse or divergence.

    Stops early on collapse/divergence (CollapseDetector) and, with a validation split and
    `training.early_stopping_patience`, when validation loss stops improving (exporting the best
    epoch). `on_epoch(metrics)` is called after each epoch, once its checkpoint is written; `say(line)`
    hears that a finished attempt's result is reused or an unfinished one resumes (`name` says which).
    Data or configuration errors propagate as exceptions. On a cluster (TF_CONFIG), every worker
    calls this with the same arguments; only the chief writes `workdir` (see the module docstring).
    With `start` (a rollback-and-cut retry), a new attempt starts from that earlier attempt's
    checkpoint and epochs instead of fresh weights (fresh weights if that checkpoint is gone).
    A streamed spec's pass is kept in (and reused from) the directory `scan`, `<workdir>/scan` by default.
    OutOfMemory, in one line, when the model or a batch does not fit the device; NoSpaceLeft when the
    workdir's disk is full; a DataError naming the shard when a streamed shard cannot be read mid-epoch;
    storage.Unreachable, saying how to continue, when the workdir's or the data's storage stopped answering.
    """
    with _failures_named(name, str(workdir)):
        return _run_attempt(spec, learning_rate, workdir, on_epoch, say or (lambda line: None), name, start,
                            scan or workdir_scan(workdir))


def _run_attempt(
    spec: ExperimentSpec, learning_rate: float, workdir: str, on_epoch: EpochCallback | None,
    say: Callable[[str], None], name: str, start: StartPoint | None, scan: str,
) -> AttemptResult:
    workdir = str(workdir)
    training = spec.training
    cluster = training_cluster(training)
    claim_workdir(workdir, spec, learning_rate, write=cluster.is_chief, start=start)
    stored = load_result(workdir, say)
    if stored is not None:
        say(f"{name} already ended {stored.status}: reusing its result from {workdir} (no retraining)")
        return stored
    strategy = distribution_strategy(cluster, training.gpus_per_worker)
    if cluster.workers > 1:
        say(f"{name}: {cluster.name} of {cluster.workers} workers, {strategy.num_replicas_in_sync} replicas")
    keep_less_freed_memory()
    # one worker keeps a streamed pass: a resumed attempt, a later one and the evaluation reuse it
    data = experiment_data(spec, scan if cluster.workers == 1 else None)
    raise_for_errors(check_loaded(spec, data))  # BadDataError: bad input never reaches the model
    with read_failures_named(data.stream):  # a streamed shard unreadable mid-epoch, in one line
        tf_keras.utils.set_random_seed(training.seed)
        use_mixed_precision_if_gpu()
        with strategy.scope():
            model = build_model(spec, data.stats, data.candidates)
        # the lookups run in the input pipeline (once per row in memory), so the train step sees only ids and numbers
        columns = model_columns(spec)
        batches = functools.partial(
            make_dataset, columns=columns, batch_size=training.batch_size, preprocess=model.preprocess
        )
        train_data = sharded(training_batches(data, columns, training.batch_size, training.seed, model.preprocess))
        validation = data.validation
        val_data = sharded(batches(validation)) if validation is not None and len(validation) else None
        candidates = data.candidates
        del data, validation  # the datasets hold the looked-up rows; the frames are not needed again
        release_freed_memory()
        with strategy.scope():
            # the train step already sums the telemetry over replicas: every replica holds the totals, so
            # the logs take the first one's (Keras' default would sum them again across workers)
            model.distribute_reduction_method = "first"
            model.compile(
                optimizer=build_optimizer(training, learning_rate),
                jit_compile=jit_compile(training),
                steps_per_execution=STEPS_PER_EXECUTION if cluster.workers == 1 else 1,
            )
            model.compute_loss(next(iter(train_data)))  # build every variable before restoring
            optimizer = model.optimizer
            getattr(optimizer, "inner_optimizer", optimizer).build(model.trainable_variables)
        keep = checkpoints_to_keep(training)
        with _writable(workdir, cluster) as mirror:
            checkpoints = _Checkpoints(model, os.path.join(mirror.path, CHECKPOINTS_DIR), max_to_keep=keep)
            progress = _Progress(spec)
            data_now = data_fingerprints(spec)
            for metrics in checkpoints.restore(lambda line: say(f"{name}: {line}"), data_now):
                progress.record(metrics)
            if progress.epochs:
                done = len(progress.epochs)
                say(f"resuming {name} at epoch {done + 1} (epochs 1..{done} restored from checkpoint)")
            elif start is not None:
                if _start_from(model, start, progress, data_now):
                    say(f"{name} starts from attempt {start.attempt}'s epoch {start.epoch} (its last healthy one)")
                else:
                    say(f"{name}: attempt {start.attempt}'s epoch {start.epoch} checkpoint is gone, unreadable or "
                        "trained on other data; starting afresh")
                    start = None

            if not progress.finished:
                writer = tf.summary.create_file_writer(os.path.join(mirror.path, "tb"))
                monitor = EpochMonitor(_epoch_handler(progress, checkpoints, writer, mirror, on_epoch))
                model.fit(
                    train_data,
                    epochs=training.epochs,
                    initial_epoch=len(progress.epochs),
                    validation_data=val_data,
                    callbacks=[monitor],
                    verbose=0,
                )
                writer.close()

            verdict = progress.detector.conclude()
            model_uri = None
            if verdict is None:
                if progress.early_stopped:
                    checkpoints.restore_weights(progress.best.epoch)
                export_model(model, spec, candidates, os.path.join(mirror.path, EXPORT_DIR))
                model_uri = join(workdir, EXPORT_DIR)
            mirror.push()
        reason = verdict.reason if verdict else _success_reason(progress)
        if start is not None:
            reason = f"started from attempt {start.attempt}'s epoch {start.epoch}; {reason}"
        result = AttemptResult(
            status=verdict.status if verdict else "succeeded",
            reason=reason,
            learning_rate=learning_rate,
            epochs=progress.epochs,
            epochs_run=len(progress.epochs),
            model_uri=model_uri,
            workdir=workdir,
            start=start,
        )
        if cluster.is_chief:
            write_bytes(join(workdir, RESULT_FILE), result.model_dump_json(indent=2).encode())
        return result
