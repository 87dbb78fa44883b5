"""Training on several devices and several machines, on TensorFlow's own ``tf.distribute``.

- :func:`make_strategy` turns the ``strategy`` option (``"auto"``, ``"one_device"``,
  ``"mirrored"``, ``"multi_worker"`` or a ``tf.distribute.Strategy``) into a strategy.
- :func:`set_cluster` writes ``TF_CONFIG`` from ``--workers`` and ``--task-index``;
  :func:`cluster` reads it back. Worker 0 is the chief: the only one that writes files.
- :func:`distributed_fit` is the training loop under a strategy: Keras 3's ``model.fit``
  does not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, every Keras 3
  up to 3.15), so fruitclf trains with its own step under ``strategy.run`` over
  ``strategy.distribute_datasets_from_function``, driving the same callbacks as ``fit``
  (checkpoints, history, early stopping, progress). The same loop serves every strategy, so
  ``mirrored`` on one machine tests what ``multi_worker`` runs on many.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._quiet import read_pipeline
from ._validation import check_choice, check_int
from .exceptions import TrainingError

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["STRATEGIES", "Cluster", "cluster", "distributed_fit", "make_strategy", "set_cluster"]

logger = logging.getLogger("fruitclf")

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
#: Set once this process has joined its multi-worker cluster. TensorFlow waits for every
#: worker inside the strategy's constructor, in C++ where no signal or timeout reaches it;
#: the command line watches this event to give up after ``--connect-timeout`` seconds.
CONNECTED = threading.Event()
#: Seconds a collective operation (the gradient all-reduce) waits for the other workers
#: before it fails: a worker that died makes the others stop within about this long.
WORKER_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The workers of a multi-worker run and this process's place among them.

    Attributes
    ----------
    workers : list of str
        ``HOST:PORT`` of every worker, in task order.
    task_index : int
        This worker's index; 0 is the chief.

    Examples
    --------
    >>> found = Cluster(["10.0.0.1:12345", "10.0.0.2:12345"], 1)
    >>> found.is_chief, json.loads(found.to_tf_config())["task"]
    (False, {'type': 'worker', 'index': 1})
    """

    workers: list[str]
    task_index: int

    @property
    def is_chief(self) -> bool:
        """True for worker 0, the one that writes the run folder."""
        return self.task_index == 0

    def to_tf_config(self) -> str:
        """The ``TF_CONFIG`` value TensorFlow reads."""
        return json.dumps({"cluster": {"worker": list(self.workers)},
                           "task": {"type": "worker", "index": self.task_index}})


def set_cluster(workers: str | Sequence[str], task_index: int) -> Cluster:
    """Write ``TF_CONFIG`` for this process from the worker list and its index.

    Parameters
    ----------
    workers : str or sequence of str
        ``"host1:port,host2:port"`` or a list of ``HOST:PORT``; the same on every worker.
    task_index : int
        This worker's position in the list (0: the chief).

    Examples
    --------
    >>> set_cluster("10.0.0.1:12345,10.0.0.2:12345", 1).is_chief  # doctest: +SKIP
    False
    """
    hosts = [w.strip() for w in (workers.split(",") if isinstance(workers, str) else workers)]
    bad = [w for w in hosts if w.rpartition(":")[2].isdigit() is False or not w.rpartition(":")[0]]
    if not hosts or bad:
        raise ValueError(f"`workers` must be HOST:PORT entries separated by commas, e.g. "
                         f"'10.0.0.1:12345,10.0.0.2:12345'. Received: workers={workers!r}")
    index = check_int(task_index, "task_index", min_value=0, max_value=len(hosts) - 1,
                      hint=f"Number the {len(hosts)} workers from 0 (the chief)")
    found = Cluster(hosts, index)
    os.environ["TF_CONFIG"] = found.to_tf_config()
    return found


def cluster() -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or None without one (or with one worker)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        spec = config.get("cluster", {})
        workers = list(spec.get("chief", [])) + list(spec.get("worker", []))
        task = config.get("task", {})
        index = int(task.get("index", 0)) + (len(spec.get("chief", []))
                                             if task.get("type") == "worker" else 0)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"TF_CONFIG is not valid cluster JSON ({exc}). Received: "
                         f"TF_CONFIG={raw[:200]!r}") from None
    if task.get("type") not in ("worker", "chief"):
        raise ValueError(f"TF_CONFIG's task type must be 'worker' or 'chief' for "
                         f"MultiWorkerMirroredStrategy. Received: {task.get('type')!r}")
    return Cluster(workers, index) if len(workers) > 1 else None


def make_strategy(option: Any) -> tf.distribute.Strategy | None:
    """The strategy for a ``strategy`` option; None trains on one device with Keras's fit.

    ``"auto"``: ``"multi_worker"`` when ``TF_CONFIG`` describes a cluster of two or more
    workers (as cluster managers set it), else ``MirroredStrategy`` over every GPU when
    several are visible, else one device.
    ``"multi_worker"`` needs ``TF_CONFIG`` (set by a cluster manager or by
    :func:`set_cluster`) and must be created before TensorFlow runs anything else.
    """
    import tensorflow as tf

    if option is None or isinstance(option, tf.distribute.Strategy):
        return option
    name = check_choice(option, "strategy", STRATEGIES)
    if name == "one_device":
        return None
    if name == "auto" and cluster() is None:
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if cluster() is None:
        raise ValueError("strategy='multi_worker' needs a cluster of two or more workers: set "
                         "TF_CONFIG, or pass --workers HOST:PORT,HOST:PORT --task-index N "
                         "(fruitclf.distribute.set_cluster).")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=WORKER_TIMEOUT)
    found = cluster()
    assert found is not None  # checked above
    logger.info("Worker %d of %d: connecting to %s ...", found.task_index, len(found.workers),
                ", ".join(found.workers))
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        CONNECTED.set()
        return strategy
    except RuntimeError as exc:  # "Collective ops must be configured at program startup"
        raise TrainingError(f"Cannot start the multi-worker strategy: {exc}. Create it (or "
                            "call fruitclf.run / Trainer with strategy='multi_worker') before "
                            "TensorFlow runs anything else in the process.") from None


def role(strategy: Any) -> tuple[int, int]:
    """``(task index, number of workers)`` of this process under ``strategy``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    index = int(resolver.task_id or 0) + (len(spec.get("chief", []))
                                          if resolver.task_type == "worker" else 0)
    return index, max(workers, 1)


def is_chief(strategy: Any) -> bool:
    """True unless this process is a worker other than 0 of a multi-worker strategy."""
    return role(strategy)[0] == 0


def digest(paths: Sequence[str]) -> str:
    """A short fingerprint of a file list, to show that workers agree on the split."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]


def check_workers_agree(strategy: Any, paths: Sequence[str]) -> str:
    """Raise a TrainingError unless every worker holds the same file list; return its
    fingerprint. The replicas sum the fingerprint and its square: both sums are the count
    times this worker's values only when every value is the same."""
    import tensorflow as tf

    mine = digest(paths)
    value = int(mine[:7], 16)
    pair = tf.constant([value, value * value], tf.int64)
    per_replica = strategy.run(lambda: tf.identity(pair))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()
    replicas = int(strategy.num_replicas_in_sync)
    if [int(total[0]), int(total[1])] != [replicas * value, replicas * value * value]:
        raise TrainingError(f"The workers do not see the same data (this one's training split "
                            f"{mine}). Give every worker the same folder on a shared file "
                            "system, the same options and the same fruitclf version.")
    return mine


#: The most bytes one collective call carries from each worker when :func:`all_gather_bytes`
#: exchanges data (far below gRPC's 2 GB message limit; a large exchange takes several calls).
GATHER_CHUNK_BYTES = 16 << 20


def all_gather_bytes(strategy: Any, data: bytes | bytearray, *,
                     chunk_bytes: int = GATHER_CHUNK_BYTES) -> list[memoryview]:
    """Every worker's ``data``, in worker order, on every worker: TensorFlow's collective
    all-gather under ``strategy``, in calls of at most ``chunk_bytes`` a worker. Every worker
    must call it at the same point; one that has stopped makes the others raise a
    TrainingError within :data:`WORKER_TIMEOUT` seconds."""
    import numpy as np
    import tensorflow as tf

    index, workers = role(strategy)
    if workers == 1:
        return [memoryview(data)]

    def gather(values: np.ndarray) -> np.ndarray:
        # The collectives carry numbers, not bytes: the data travels as int64 words.
        tensor = tf.constant(values)
        per_replica = strategy.run(lambda: tf.identity(tensor))
        return np.asarray(strategy.gather(per_replica, axis=0).numpy())

    try:
        # (worker, length) of every replica: a worker with several devices sends its data
        # from each, and the first copy is kept.
        table = gather(np.array([[index, len(data)]], np.int64)).reshape(-1, 2)
        first = {int(w): replica for replica, w in reversed(list(enumerate(table[:, 0])))}
        if sorted(first) != list(range(workers)):
            raise TrainingError(f"The workers' exchange found workers {sorted(first)}, not 0 "
                                f"to {workers - 1}: start every worker with the same "
                                "--workers list.")
        words = -(-int(table[:, 1].max()) // 8)
        mine = np.frombuffer(data, np.uint8)
        received = {w: np.empty(words, np.int64) for w in range(workers)}
        step = max(1, chunk_bytes // 8)
        for start in range(0, words, step):
            piece = np.zeros(min(step, words - start), np.int64)  # zeros past the end
            part = mine[start * 8:(start + len(piece)) * 8]
            piece.view(np.uint8)[:len(part)] = part
            rows = gather(piece).reshape(len(table), -1)
            for worker, replica in first.items():
                received[worker][start:start + step] = rows[replica]
    except tf.errors.OpError as exc:
        lost = _lost_worker(exc, workers)
        if lost is not None:
            raise lost from None
        raise
    return [memoryview(received[w].view(np.uint8).data)[:int(table[first[w], 1])]
            for w in range(workers)]


def shard_steps(num_examples: int, per_replica_batch: int, replicas: int) -> int:
    """Steps per epoch so that every replica sees its share of the data once (rounded up)."""
    return max(1, math.ceil(num_examples / (per_replica_batch * replicas)))


_LOST = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError",
         "InternalError", "UnknownError")


def _lost_worker(exc: Exception, num_workers: int) -> TrainingError | None:
    if num_workers < 2 or type(exc).__name__ not in _LOST:
        return None
    found = re.search(r'grpc_message:"([^"]+)"', str(exc))
    first = type(exc).__name__ + (f": {found.group(1)}" if found else "")
    return TrainingError(f"Lost contact with another worker of the cluster ({first}). A worker "
                         "stopped or cannot be reached; start every worker again with the same "
                         "command and --resume.")


def distributed_fit(
    model: Any,
    strategy: Any,
    loss: Any,
    train: tf.data.Dataset | Callable[[Any], tf.data.Dataset],
    validation: tf.data.Dataset | None,
    *,
    epochs: int,
    initial_epoch: int,
    steps_per_epoch: int | None,
    callbacks: Sequence[Any],
    verbose: int,
) -> None:
    """Train ``model`` (compiled, with its optimizer) under ``strategy`` on ``loss`` from
    ``initial_epoch`` to ``epochs``, with the callbacks ``fit`` would call.

    ``train`` is a ``tf.data.Dataset`` of global batches (split across the replicas) or a
    function of a ``tf.distribute.InputContext`` returning one worker's per-replica batches
    (each worker reads only its share). Every worker runs ``steps_per_epoch`` steps an epoch;
    the input repeats, so uneven shares never leave a worker short.
    """
    import keras
    import tensorflow as tf

    index, workers = role(strategy)
    pipelines: list[Any] = []

    def dataset_fn(context: Any) -> Any:
        dataset = train(context) if callable(train) else train
        pipelines.append(dataset)
        return dataset.repeat()

    if callable(train) and not isinstance(train, tf.data.Dataset):
        distributed = strategy.distribute_datasets_from_function(dataset_fn)
    else:
        distributed = strategy.experimental_distribute_dataset(train.repeat())
        pipelines.append(train)
    steps = steps_per_epoch or _cardinality(train)
    per_example = _per_example_loss(loss)
    step = _train_step(model, strategy, per_example)
    evaluate = _eval_step(model, per_example) if validation is not None else None
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=False, add_progbar=verbose == 1 and index == 0,
        model=model, verbose=verbose, epochs=epochs, steps=steps)
    model.stop_training = False
    callback_list.on_train_begin()
    try:
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            for pipeline in pipelines:
                _set_epoch(pipeline, epoch)
            iterator = iter(distributed)
            totals = [0.0, 0.0, 0.0]
            for batch_number in range(steps):
                callback_list.on_train_batch_begin(batch_number)
                loss_sum, correct, count = step(iterator)
                totals = [totals[0] + float(loss_sum), totals[1] + float(correct),
                          totals[2] + float(count)]
                callback_list.on_train_batch_end(batch_number, _logs(totals))
            logs = _logs(totals)
            if evaluate is not None and validation is not None:
                logs.update(_validate(evaluate, validation))
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    except tf.errors.OpError as exc:
        lost = _lost_worker(exc, workers)
        if lost is not None:
            raise lost from None
        raise
    callback_list.on_train_end()


def _cardinality(dataset: Any) -> int:
    import tensorflow as tf

    count = int(dataset.cardinality()) if isinstance(dataset, tf.data.Dataset) else -1
    if count <= 0:
        raise ValueError("Training under a strategy needs the number of batches per epoch: "
                         "pass a finite tf.data.Dataset, or steps_per_epoch=...")
    return count


def _set_epoch(dataset: Any, epoch: int) -> None:
    from .data import set_pipeline_epoch

    set_pipeline_epoch(dataset, epoch)


def _logs(totals: Sequence[float]) -> dict[str, float]:
    loss_sum, correct, count = totals
    return {"accuracy": correct / count if count else 0.0,
            "loss": loss_sum / count if count else 0.0}


def _per_example_loss(loss: Any) -> Callable[[Any, Any], Any]:
    """The unreduced form of a Keras loss (an instance or a name)."""
    import keras

    if isinstance(loss, keras.losses.Loss):
        return loss.call  # type: ignore[no-any-return]  # the unreduced loss
    function = keras.losses.get(loss)
    if isinstance(function, keras.losses.Loss):
        return function.call  # type: ignore[no-any-return]
    return function  # type: ignore[no-any-return]


def _train_step(model: Any, strategy: Any, per_example: Callable[[Any, Any], Any]
                ) -> Callable[[Any], tuple[Any, Any, Any]]:
    """One distributed step: forward, loss averaged over the global batch (plus the
    regularisation share of each replica), gradients all-reduced by the optimizer; returns
    the summed loss, the correct predictions and the images, over every replica."""
    import keras
    import tensorflow as tf

    optimizer = model.optimizer

    def replica_step(images: Any, labels: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            losses = tf.cast(per_example(labels, probabilities), tf.float32)
            loss = tf.nn.compute_average_loss(losses)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(
                    tf.add_n([tf.cast(x, tf.float32) for x in model.losses]))
            scaled = (optimizer.scale_loss(loss)
                      if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(predicted, tf.cast(tf.reshape(labels, [-1]), tf.int32)), tf.float32))
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return tf.reduce_sum(losses), correct, count

    def step(iterator: Any) -> Any:
        images, labels = next(iterator)
        results = strategy.run(replica_step, args=(images, labels))
        return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None)
                     for r in results)

    with strategy.scope():  # Keras creates optimizer slots lazily: not inside the step
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    return tf.function(step)  # type: ignore[no-any-return]


def _eval_step(model: Any, per_example: Callable[[Any, Any], Any]
               ) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    import tensorflow as tf


    def evaluate(images: Any, labels: Any) -> tuple[Any, Any, Any]:
        probabilities = model(images, training=False)
        losses = tf.cast(per_example(labels, probabilities), tf.float32)
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(predicted, tf.cast(tf.reshape(labels, [-1]), tf.int32)), tf.float32))
        return tf.reduce_sum(losses), correct, tf.cast(tf.shape(labels)[0], tf.float32)

    return tf.function(evaluate)  # type: ignore[no-any-return]


def _validate(evaluate: Callable[[Any, Any], tuple[Any, Any, Any]], validation: Any
              ) -> dict[str, float]:
    """Validation loss and accuracy on this worker's copy of the weights (the same on every
    worker), over the whole validation set: no collective, so no worker waits for another."""
    totals = [0.0, 0.0, 0.0]
    for images, labels in read_pipeline(validation):
        loss_sum, correct, count = evaluate(images, labels)
        totals = [totals[0] + float(loss_sum), totals[1] + float(correct),
                  totals[2] + float(count)]
    logs = _logs(totals)
    return {"val_accuracy": logs["accuracy"], "val_loss": logs["loss"]}


def _strategy_name(strategy: Any) -> str:
    """The public name of a strategy (MultiWorkerMirroredStrategy's class is called
    CollectiveAllReduceStrategy)."""
    if strategy is None:
        return "one device"
    import tensorflow as tf

    for public, name in ((tf.distribute.MultiWorkerMirroredStrategy,
                          "MultiWorkerMirroredStrategy"),
                         (tf.distribute.MirroredStrategy, "MirroredStrategy"),
                         (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy")):
        if isinstance(strategy, public):
            return name
    return type(strategy).__name__


def describe(strategy: Any, per_replica_batch: int) -> dict[str, Any]:
    """What the report and metrics say about the distribution of a run."""
    _, workers = role(strategy)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1)) if strategy else 1
    name = _strategy_name(strategy)
    return {"strategy": name, "workers": workers, "replicas": replicas,
            "per_replica_batch_size": per_replica_batch,
            "global_batch_size": per_replica_batch * replicas,
            "learning_rate_scaled": False}


def summary(strategy: Any, per_replica_batch: int) -> str:
    """``""`` on one device, else ``" (MirroredStrategy: 2 replicas, global batch 64)"``."""
    if strategy is None:
        return ""
    info = describe(strategy, per_replica_batch)
    workers = f"{info['workers']} workers, " if info["workers"] > 1 else ""
    return (f" ({info['strategy']}: {workers}{info['replicas']} replicas, global batch "
            f"{info['global_batch_size']} = {per_replica_batch} x {info['replicas']}, "
            "learning rate not scaled)")
