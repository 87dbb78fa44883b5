"""The whole job in one call: folder -> checked data -> trained model -> evaluation -> report.

:func:`run` wires the public pieces (:class:`ImageFolderDataset`, :class:`CNNSpec`,
:class:`Trainer`, :class:`Evaluator`, :func:`save_model`, the plots) and writes everything a
run produces into one folder. ``fruitclf train`` and ``fruitclf demo`` call it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _html, distribute
from . import report as _report
from ._compat import device_description, resolve_precision, versions
from ._ownership import RUN_FILE, RUN_FILES, check_outside
from ._quiet import read_pipeline
from ._runfolder import RunFolder
from ._validation import check_image_size
from .config import Recipe, RunConfig
from .data import DatasetSplit, ImageFolderDataset, Preprocessing
from .data.check import FileProblem, describe_problems
from .data.quality import FingerprintIndex, LeakedPair
from .data.sharing import share_of
from .data.unlabeled import PseudoLabels, calibration_split
from .distribute import is_chief, make_strategy
from .evaluation import EvaluationResult, Evaluator, Misclassified, plot_misclassified
from .exceptions import CorruptedImagesError, DatasetError, RunFolderError, SpecError, TrainingError
from .io import read_metadata, save_model
from .settings import SETTINGS
from .spec import Augmentation, CNNSpec
from .training import Trainer, TrainingHistory

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

__all__ = ["Recipe", "RunConfig", "RunResult", "run"]

logger = logging.getLogger("fruitclf")

#: Augmentation ``run(augment=True)`` adds to a preset without its own (``worksheet``).
PHOTO_AUGMENTATION = Augmentation()


@dataclasses.dataclass
class RunResult:
    """What :func:`run` produced. In a notebook it displays as a small report.

    Attributes
    ----------
    out_dir : pathlib.Path
        The run folder.
    metrics : dict
        The contents of ``metrics.json``.
    history : TrainingHistory
        Per-epoch metrics.
    evaluation : EvaluationResult or None
        The test-folder evaluation, when a test folder was given.
    model : keras.Model
        The trained model (best epoch's weights).
    class_names : list of str
        Class names in label order.
    spec : CNNSpec
        The spec the model was built from.
    figures : dict of str to Figure
        ``history``, ``samples``, ``label_errors`` (when there are possible label errors)
        and, with a test folder, ``confusion_matrix`` and ``misclassified``.
    files : dict of str to pathlib.Path
        Every file written, by role.
    leakage : list of LeakedPair
        Test images with a twin in the training folder (see
        :meth:`ImageFolderDataset.find_leakage`).
    label_errors : list of Misclassified
        Training and validation images the trained model calls another class, most
        confident first: possible label errors (``true_label`` is the folder's class).
    worker : int
        This process's worker index in a multi-worker run (0: the chief, which wrote the
        files; the others return no files, no evaluation and the training metrics only).

    Examples
    --------
    A short run (two epochs on 16 x 16 images), to show what comes back:

    >>> result = fruitclf.run("fruits/train", test_dir="fruits/test", out="runs/short",
    ...                       image_size=16, epochs=2, tta=1, verbose=0)
    >>> result.metrics["epochs_run"], result.metrics["num_test_images"]
    (2, 31)
    >>> result.metrics["num_leaked_test_images"], result.leakage[0].test_relpath
    (1, 'acai/t07.png')
    >>> result.files["model.h5"], result.report_path
    (PosixPath('runs/short/model.h5'), PosixPath('runs/short/report.md'))
    """

    out_dir: Path
    metrics: dict[str, Any]
    history: TrainingHistory
    evaluation: EvaluationResult | None
    model: keras.Model
    class_names: list[str]
    spec: CNNSpec
    figures: dict[str, Figure]
    files: dict[str, Path]
    leakage: list[LeakedPair] = dataclasses.field(default_factory=list)
    label_errors: list[Misclassified] = dataclasses.field(default_factory=list)
    worker: int = 0

    @property
    def report_path(self) -> Path:
        """The one-page ``report.md``."""
        return self.files["report"]

    @property
    def report_html_path(self) -> Path:
        """The same report as one self-contained web page, ``report.html``."""
        return self.files["report_html"]

    def _repr_html_(self) -> str:
        """What the report shows first: the headline, the key numbers, then the figures."""
        parts = [_html.heading(f"fruitclf run: {self.out_dir}", 3),
                 _html.paragraph(_report.headline(self.metrics)),
                 _html.table(("metric", "value"), _report.key_metrics(self.metrics))]
        for role in _FIGURE_ORDER:
            if role in self.figures:
                parts.append(_html.image(_report.figure_png(self.figures[role], dpi=80),
                                         _report.FILE_ROLES.get(role, role)))
        if self.files.get("report_html") is not None:
            parts.append(_html.paragraph(f"The whole report: {self.report_html_path}"))
        return "\n".join(parts)


#: The figures of a run in the order a notebook shows them.
_FIGURE_ORDER = ("history", "confusion_matrix", "misclassified", "calibration", "attention",
                 "samples", "label_errors")


def _resolve_spec(spec: str | CNNSpec | os.PathLike[str], num_classes: int,
                  image_size: tuple[int, int], augment: bool | Augmentation,
                  weights: str | os.PathLike[str] | None) -> CNNSpec:
    if isinstance(spec, CNNSpec):
        resolved = spec
    elif isinstance(spec, str) and spec in CNNSpec.PRESETS:
        preset = CNNSpec.preset(spec, weights=weights)
        resolved = preset.replace(num_classes=num_classes,
                                  input_shape=(*image_size, preset.input_shape[2]))
        if augment is True and resolved.augmentation is None:
            resolved = resolved.replace(augmentation=PHOTO_AUGMENTATION)
    elif isinstance(spec, (str, os.PathLike)) and (
        os.fspath(spec).endswith(".json") or os.path.exists(spec)
    ):
        resolved = CNNSpec.from_json(spec)
    else:
        raise SpecError(
            f"`spec` must be a preset ({', '.join(CNNSpec.PRESETS)}), a spec JSON file or a "
            f"CNNSpec. Received: spec={spec!r}"
        )
    if resolved.num_classes != num_classes:
        raise SpecError(
            f"The spec has num_classes={resolved.num_classes} but the training folder has "
            f"{num_classes} classes. Set \"num_classes\": {num_classes} in the spec."
        )
    if isinstance(augment, Augmentation):
        resolved = resolved.replace(augmentation=augment)
    elif not augment:
        resolved = resolved.replace(augmentation=None)
    return resolved


def _resolve_recipe(recipe: str | Recipe | None, spec: str | CNNSpec | os.PathLike[str]
                    ) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is not None:
        return Recipe.preset(recipe)
    if isinstance(spec, str) and spec in CNNSpec.PRESETS:
        return Recipe.preset(spec)
    if isinstance(spec, CNNSpec) and spec.backbone is not None:
        return Recipe.preset(spec.backbone)
    return Recipe.preset("small-data")


def _require_clean(dataset: ImageFolderDataset, role: str, preprocessing: Preprocessing,
                   strategy: Any = None) -> None:
    """Check ``dataset`` (shared between the workers of a multi-worker ``strategy``, which
    all stop here alike on a bad file); raise on files that would crash training."""
    report = dataset.check(preprocessing=preprocessing, strategy=strategy)
    if report.problems:
        raise CorruptedImagesError(
            f"{len(report.problems)} files in the {role} folder {dataset.root!r} would crash "
            f"training: {describe_problems(report.problems)}. Run `fruitclf clean "
            f"{dataset.root}` to quarantine them.",
            [p.path for p in report.problems],
        )


def run(
    train_dir: str | os.PathLike[str] | ImageFolderDataset,
    *,
    out: str | os.PathLike[str],
    test_dir: str | os.PathLike[str] | None = None,
    unlabeled: str | os.PathLike[str] | None = None,
    spec: str | CNNSpec | os.PathLike[str] = RunConfig.spec,
    recipe: str | Recipe | None = None,
    image_size: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    validation_split: float | None = None,
    group_duplicates: bool = RunConfig.group_duplicates,
    seed: int = RunConfig.seed,
    augment: bool | Augmentation = RunConfig.augment,
    learning_rate: float | None = None,
    weights: str | os.PathLike[str] | None = "imagenet",
    tta: int | None = None,
    pseudo_label_threshold: float | None = None,
    precision: str | None = None,
    interpolation: str = RunConfig.interpolation,
    cache: str | None = RunConfig.cache,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_interval: float = RunConfig.checkpoint_interval,
    drop_leaked: bool = False,
    follow_links: bool = False,
    training_index: bool = True,
    verbose: str | int = "auto",
    strategy: Any = "auto",
) -> RunResult:
    """Train, evaluate and report on an image folder, writing everything into ``out``.

    Checks every image first and stops before training if a file would crash it; the same
    pass finds test images that are also in the training folder (leakage). Then trains the
    spec with its :class:`Recipe` (by default the ``small-data`` preset: a
    batch-normalised CNN trained on every image with AdamW, a cosine schedule and label
    smoothing), saves ``model.h5`` and ``model.keras`` with their class names, plots the
    curves and a sample grid, evaluates on ``test_dir`` and writes ``metrics.json`` and a
    one-page ``report.md``, which also shows the training images the model most confidently
    disagrees with (possible label errors). Settings left as None come from the recipe.

    Parameters
    ----------
    train_dir : path-like or ImageFolderDataset
        Folder with one sub-folder per class, or a dataset of it (e.g. a subset made with
        :meth:`ImageFolderDataset.exclude`).
    out : path-like
        Run folder, created if missing. A folder that holds another run is refused unless
        ``overwrite`` or ``resume``; a second process using the folder is refused while the
        first runs. The final files (models, figures, metrics, report) are written under
        temporary names and moved into place together at the end.
    test_dir : path-like, optional
        Test folder with the same classes (a subset is fine).
    unlabeled : path-like, optional
        A folder of photos without a class (sub-folders are read too), to train on as well
        (self-training, see :doc:`/howto/unlabeled`): a first model trains on 80% of the
        labelled images (at least 10 are held out, so ``unlabeled`` needs 20), measures on
        the rest how often its confidence is right (a temperature), and gives each of these
        photos its most probable class; the photos whose calibrated confidence is at least
        ``pseudo_label_threshold`` then train the final model from scratch with all the
        labelled images. About twice the time of a run without them. A first model that is
        often wrong is found over-confident and few of its labels are kept, so the photos
        cannot cost much. The photos are checked like the training folder (files that
        cannot be decoded are left out and named in a warning) and searched for twins of
        test images (leakage); ``pseudo_labels.json`` in the run folder lists each photo's
        class and confidence. With 15 labelled and 45 unlabelled photos a class, flowers12
        gained 3.3–6.2 points; food10, whose first model is often wrong, kept 0–3 of 250
        photos and stayed where it was. Not with a multi-worker strategy.
    spec : str, CNNSpec or path-like, default="small-data"
        A preset name (``CNNSpec.PRESETS``), a spec JSON file, or a spec.
    recipe : str or Recipe, optional
        How to train; by default the preset's own recipe (:meth:`Recipe.preset`), and the
        ``small-data`` recipe for a spec file or a ``CNNSpec`` without backbone.
    image_size : int or (height, width), optional
        Input size for presets (a spec file's ``input_shape`` wins); recipe: 64 for
        ``small-data``, 128 for ``worksheet``, 224 for backbones.
    batch_size : int, optional
        Images per batch (recipe: 32; worksheet 16).
    epochs : int, optional
        Epochs to train (recipe: ``small-data`` from the data size, see
        :meth:`Recipe.epochs_for`; worksheet 250 with early stopping).
    patience : int, optional
        Early stopping patience in epochs; 0 trains every epoch (recipe: 0; worksheet 20).
    validation_split : float, optional
        Share of each class held out for validation, in [0, 1); 0 trains on every image
        (recipe: 0; worksheet 0.2).
    group_duplicates : bool, default=True
        Keep copies of one photo (:meth:`ImageFolderDataset.find_duplicates`) on one side of
        the validation split, so that validation does not score photos the model trained
        on. A resumed run keeps the split it saved.
    seed : int, default=123
        One seed for the split, shuffling, initial weights and augmentation.
    augment : bool or Augmentation, default=True
        The preset's augmentation (photo augmentation for ``worksheet``), none, or your own.
    learning_rate : float, optional
        Peak learning rate (recipe: 0.002 AdamW; worksheet 0.001 Adam).
    weights : {"imagenet"}, path-like or None, default="imagenet"
        Backbone presets: ImageNet weights (downloaded by Keras), a local weights file, or
        None to train from scratch.
    tta : int, optional
        Test-time augmentation views averaged per test image (see
        :meth:`Evaluator.evaluate`; recipe: 4 for ``small-data``, 1 otherwise). The first
        model of ``unlabeled`` labels each photo with as many views.
    pseudo_label_threshold : float, optional
        With ``unlabeled``: the first model's calibrated confidence (its probability for
        the class it gives, with ``tta`` views, scaled with the temperature fitted on the
        held-out labelled images: about the share of such labels that are right) from which
        a photo trains the final model, in [0, 1]; 0 trains on every readable photo (recipe:
        0.8).
    precision : {"auto", "float32", "mixed_bfloat16", "mixed_float16"}, optional
        Dtype policy (recipe: ``"auto"``: bfloat16 where the hardware computes it natively,
        CPUs with AVX512_BF16 or AMX and recent GPUs, float32 elsewhere).
    interpolation : str, default="bilinear"
        Resize method (antialiased).
    cache : str or None, default="auto"
        Decoded-image cache; see :func:`fruitclf.plan_cache`.
    resume : bool, default=False
        Continue the run in ``out`` from its last checkpoint, exactly where it stopped (see
        :meth:`Trainer.fit`). Settings must match the first run's (only ``epochs``, ``tta``
        and ``cache`` may change); a finished run is returned as it is, changing no file.
    overwrite : bool, default=False
        Replace the run in ``out``: its files (and only those) are removed first.
    checkpoint_interval : float, default=60.0
        Seconds between checkpoint writes (see :class:`Trainer`); a kill loses at most about
        this long or one epoch. 0 writes every epoch.
    drop_leaked : bool, default=False
        Evaluate without the test images that have a twin (an exact or near duplicate) in the
        training folder. Either way such images are counted, named in ``leakage.json`` and
        the report, and a warning gives their number; without this option the metrics also
        give ``test_accuracy_without_leaked``.
    follow_links : bool, default=False
        Follow links to folders in the training and test folders (see
        :class:`ImageFolderDataset`); links not followed are named in a warning.
    training_index : bool, default=True
        Keep fingerprints of the training images in the model files
        (:meth:`ImageFolderDataset.fingerprint_index`, 99 bytes an image), so that
        ``fruitclf evaluate`` and :meth:`LoadedModel.find_leakage` find test images the model
        was trained on. False leaves them out (a model shared outside, a huge folder).
    verbose : {"auto", 0, 1, 2}, default="auto"
        Progress: bars on a terminal, one line per epoch elsewhere (see :class:`Trainer`).
    strategy : str or tf.distribute.Strategy, default="auto"
        ``"auto"``, ``"one_device"``, ``"mirrored"`` or ``"multi_worker"``: where to train
        (see :doc:`/howto/distributed`). ``"auto"``: every GPU of this
        machine when there are several, else one device. ``"multi_worker"``: every worker of
        the cluster in ``TF_CONFIG``; start the same call on each worker. ``batch_size`` is
        per replica: the global batch is ``batch_size`` times the replicas, with the
        learning rate unchanged. Only the chief (worker 0) checks the images and writes the
        run folder; the other workers train on their share of the files and return a result
        without files.

    Returns
    -------
    RunResult

    Raises
    ------
    DatasetError
        For a missing/empty folder, a single class, an empty class, or a test class unknown
        to the training folder.
    CorruptedImagesError
        If files would crash training (run ``fruitclf clean`` first).
    RunFolderError
        If ``out`` holds another run, is used by another process, or holds a run with other
        settings than a ``resume`` asks for.
    WriteError
        If a file cannot be written (disk full, permissions); the message names it.
    WeightsError
        If pretrained backbone weights cannot be downloaded or read.

    Examples
    --------
    >>> result = fruitclf.run("fruits/train", test_dir="fruits/test",
    ...                       out="runs/fruits")  # doctest: +SKIP
    >>> result.metrics["test_accuracy"]  # doctest: +SKIP
    0.93
    """
    plan = _resolve_recipe(recipe, spec)
    job = _Job.resolve(
        plan, train_dir=train_dir, test_dir=test_dir, unlabeled=unlabeled,
        pseudo_label_threshold=pseudo_label_threshold, out=out, spec=spec, augment=augment,
        weights=weights, image_size=image_size, batch_size=batch_size, epochs=epochs,
        patience=patience, validation_split=validation_split,
        group_duplicates=group_duplicates, seed=seed,
        learning_rate=learning_rate, tta=tta, interpolation=interpolation,
        checkpoint_interval=checkpoint_interval, drop_leaked=drop_leaked,
        follow_links=follow_links, training_index=training_index)
    # Everything above runs without TensorFlow, so that input errors come at once. A
    # multi-worker strategy must exist before TensorFlow runs anything else.
    distribution = make_strategy(strategy)
    policy = resolve_precision(plan.precision if precision is None else precision)
    if job.unlabeled is not None and distribute.role(distribution)[1] > 1:
        raise ValueError("`unlabeled` trains in one process: a first model labels the photos "
                         "before the final model trains. Train without a multi-worker "
                         "cluster (one machine, with all its GPUs), or without `unlabeled`.")
    if not is_chief(distribution):
        return job.work_for_chief(plan, distribution, policy, verbose, cache, resume)
    leaks = job.check_data(distribution)
    split = job.dataset.split(job.validation_split, seed=job.seed,
                              group_duplicates=job.group_duplicates)
    # Too few labelled images to hold some out stops here, before the run folder exists.
    held = job.held_out(split) if job.unlabeled is not None else None
    epochs = plan.epochs_for(len(split.training)) if job.epochs is None else job.epochs
    config = job.config(plan, policy, epochs, cache, os.fspath(spec)
                        if not isinstance(spec, CNNSpec) else job.spec.name)
    files = _run_files(job.out_dir, plan, unlabeled=job.unlabeled is not None)
    trainer = job.trainer(plan, policy, files, verbose, distribution)
    identity = {"config": config.to_dict(), "class_names": job.dataset.class_names,
                "spec": job.spec.to_dict()}
    with RunFolder(job.out_dir, identity, overwrite=overwrite, resume=resume) as folder:
        training, pseudo = split.training, None
        if job.unlabeled is not None and held is not None:  # the first model labels them
            split, pseudo = job.pseudo_label(folder, plan, policy, split, held, files, cache,
                                             verbose, distribution, leaks)
            training = split.training.with_images(job.unlabeled,
                                                  pseudo.labels(job.dataset.class_names))
            epochs = plan.epochs_for(len(training)) if job.epochs is None else job.epochs
            config = dataclasses.replace(config, epochs=epochs)
        if folder.complete_for(epochs):
            logger.info("Nothing to resume: the run in %s is complete.", job.out_dir)
            return _finished_run(job.out_dir, folder, job.dataset.class_names, job.spec)
        split, history = job.train(folder, trainer, split, files, epochs, cache,
                                   plan.name, policy, training=training)
        result = job.evaluate_and_report(folder, _plain(trainer), split, history, config,
                                         files, leaks, distribute.describe(distribution,
                                                                           job.batch_size),
                                         training=training, pseudo=pseudo)
    logger.info("Run written to %s", job.out_dir)
    return result


def _checkpoint_done(trainer: Trainer, epochs: int) -> bool:
    """True when the last checkpoint already holds every epoch (or an early stop), so that a
    resumed run trains no step: every worker decides the same from the same file."""
    path = trainer.last_checkpoint_path
    if path is None or not os.path.exists(path):
        return False
    history = read_metadata(path).get("history") or {}
    return bool(history.get("stopped_early")) or int(history.get("epochs_run", 0)) >= epochs


def _plain(trainer: Trainer) -> keras.Model:
    """The trained model outside any distribution strategy (Keras's predict and save do not
    run under a multi-worker strategy), with the same weights."""
    if trainer.strategy is None:
        return trainer.model
    import keras

    copy = keras.models.clone_model(trainer.model)
    copy.set_weights(trainer.model.get_weights())
    return copy


def _run_files(out_dir: Path, plan: Recipe, *, unlabeled: bool = False) -> dict[str, Path]:
    """The files a run writes while training (the final ones are added as written)."""
    roles = [f.role for f in RUN_FILES if f.phase == "training"
             and (f.role != "checkpoint" or plan.keep == "best")
             and (f.role not in _UNLABELED_FILES or unlabeled)]
    return {role: out_dir / RUN_FILE[role].name for role in roles}


#: The run files of a run with unlabelled photos only.
_UNLABELED_FILES = ("teacher", "pseudo_labels")


@dataclasses.dataclass
class _Job:
    """The checked settings and the data of one :func:`run`, and its steps."""

    dataset: ImageFolderDataset
    test: ImageFolderDataset | None
    spec: CNNSpec
    preprocessing: Preprocessing
    out_dir: Path
    batch_size: int
    epochs: int | None
    patience: int
    validation_split: float
    group_duplicates: bool
    learning_rate: float
    seed: int
    tta: int
    checkpoint_interval: float
    drop_leaked: bool
    training_index: bool = True
    unlabeled: ImageFolderDataset | None = None
    pseudo_label_threshold: float = Recipe.pseudo_label_threshold
    refused: list[FileProblem] = dataclasses.field(default_factory=list)

    @classmethod
    def resolve(cls, plan: Recipe, *, train_dir: str | os.PathLike[str] | ImageFolderDataset,
                test_dir: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                unlabeled: str | os.PathLike[str] | None = None,
                pseudo_label_threshold: float | None = None,
                spec: str | CNNSpec | os.PathLike[str], augment: bool | Augmentation,
                weights: str | os.PathLike[str] | None, image_size: Any, batch_size: Any,
                epochs: Any, patience: Any, validation_split: Any, group_duplicates: Any,
                seed: Any,
                learning_rate: Any, tta: Any, interpolation: str, checkpoint_interval: Any,
                drop_leaked: bool, follow_links: bool = False,
                training_index: bool = True) -> _Job:
        """Check every setting (recipe values for those left None), then find the data."""
        given, folder = ((train_dir, train_dir.root) if isinstance(train_dir, ImageFolderDataset)
                         else (None, os.fspath(train_dir)))
        check_outside(out, {"training folder": folder, "test folder": test_dir,
                            "unlabeled folder": unlabeled}, "out")
        size = check_image_size(SETTINGS["image_size"].resolve(image_size, plan)
                                if not isinstance(image_size, (tuple, list)) else image_size)
        batch = SETTINGS["batch_size"].resolve(batch_size, plan)
        if epochs is not None:
            epochs = SETTINGS["epochs"].check(epochs)
        wait = SETTINGS["patience"].resolve(patience, plan)
        share = SETTINGS["validation_split"].resolve(validation_split, plan)
        together = SETTINGS["group_duplicates"].check(group_duplicates)
        rate = SETTINGS["learning_rate"].resolve(learning_rate, plan)
        seed = SETTINGS["seed"].check(seed)
        views = SETTINGS["tta"].resolve(tta, plan)
        threshold = SETTINGS["pseudo_label_threshold"].resolve(pseudo_label_threshold, plan)
        SETTINGS["interpolation"].check(interpolation)
        interval = SETTINGS["checkpoint_interval"].check(checkpoint_interval)
        if not isinstance(training_index, bool):
            raise TypeError("`training_index` must be True or False. Received: "
                            f"training_index={training_index!r}")
        dataset = (given if given is not None else
                   ImageFolderDataset(folder, follow_links=follow_links))
        dataset.require_trainable()
        if given is None:  # a dataset given is a subset its caller chose (and warned about)
            dataset.warn_small_classes()
        test = (ImageFolderDataset(test_dir, class_names=dataset.class_names,
                                   follow_links=follow_links) if test_dir else None)
        photos = (None if unlabeled is None else
                  _unlabeled(unlabeled, dataset, test, follow_links=follow_links))
        model_spec = _resolve_spec(spec, dataset.num_classes, size, augment, weights)
        height, width, channels = model_spec.input_shape
        preprocessing = Preprocessing(image_size=(height, width), interpolation=interpolation,
                                      color_mode="grayscale" if channels == 1 else "rgb")
        return cls(dataset, test, model_spec, preprocessing, Path(out), batch_size=batch,
                   epochs=epochs, patience=wait, validation_split=share,
                   group_duplicates=together, learning_rate=rate,
                   seed=seed, tta=views, checkpoint_interval=interval, drop_leaked=drop_leaked,
                   training_index=training_index, unlabeled=photos,
                   pseudo_label_threshold=threshold)

    def check_data(self, strategy: Any = None) -> list[LeakedPair]:
        """Stop on files that would crash training (the training folder's check shared
        between the workers of a multi-worker strategy); find leaked test images (one
        decode)."""
        _require_clean(self.dataset, "training", self.preprocessing, strategy)
        if self.unlabeled is not None:
            self._check_unlabeled()
        if self.test is None:
            return []
        _require_clean(self.test, "test", self.preprocessing)
        return _leakage(self.dataset, self.test, self.drop_leaked, self.unlabeled)

    def _check_unlabeled(self) -> None:
        """Leave out the unlabelled photos that training could not decode, naming them."""
        assert self.unlabeled is not None
        report = self.unlabeled.check(preprocessing=self.preprocessing)
        if not report.problems:
            return
        self.refused = list(report.problems)
        total = len(self.unlabeled)
        if len(self.refused) == total:
            raise CorruptedImagesError(
                f"None of the {total} photos in the unlabeled folder "
                f"{self.unlabeled.root!r} can be decoded: "
                f"{describe_problems(report.problems)}.", [p.path for p in report.problems])
        self.unlabeled = self.unlabeled.exclude(p.path for p in self.refused)
        logger.warning("%d of %d photos in the unlabeled folder %s cannot be decoded and are "
                       "left out: %s.", len(self.refused), total, self.unlabeled.root,
                       describe_problems(self.refused))

    def config(self, plan: Recipe, policy: str, epochs: int, cache: str | None,
               spec_name: str) -> RunConfig:
        """Every setting of the run, for the report and the resume check."""
        return RunConfig(
            spec=spec_name, image_size=self.preprocessing.image_size,
            batch_size=self.batch_size, epochs=epochs, patience=self.patience or None,
            validation_split=self.validation_split, group_duplicates=self.group_duplicates,
            seed=self.seed, augment=self.spec.augmentation is not None, optimizer=plan.optimizer,
            learning_rate=self.learning_rate, weight_decay=plan.weight_decay,
            schedule=plan.schedule, warmup_epochs=plan.warmup_epochs,
            label_smoothing=plan.label_smoothing, keep=plan.keep,
            freeze_epochs=plan.freeze_epochs, weights=self.spec.weights, precision=policy,
            interpolation=self.preprocessing.interpolation, cache=str(cache), tta=self.tta,
            checkpoint_interval=self.checkpoint_interval,
            unlabeled=None if self.unlabeled is None else self.unlabeled.root,
            pseudo_label_threshold=(None if self.unlabeled is None
                                    else self.pseudo_label_threshold),
        )

    def trainer(self, plan: Recipe, policy: str, files: Mapping[str, Path],
                verbose: str | int, strategy: Any = None) -> Trainer:
        """The Trainer of the recipe; a TTA count the model cannot give fails here."""
        trainer = Trainer(
            self.spec, class_names=self.dataset.class_names, optimizer=plan.optimizer,
            learning_rate=self.learning_rate, weight_decay=plan.weight_decay,
            schedule=plan.schedule, warmup_epochs=plan.warmup_epochs,
            label_smoothing=plan.label_smoothing, freeze_epochs=plan.freeze_epochs,
            fine_tune_learning_rate=plan.fine_tune_learning_rate,
            patience=self.patience or None, restore_best=plan.keep == "best",
            checkpoint_path=files.get("checkpoint"),
            last_checkpoint_path=files["last_checkpoint"],
            history_path=files.get("history_json"),
            checkpoint_interval=self.checkpoint_interval, seed=self.seed, precision=policy,
            preprocessing=self.preprocessing, verbose=verbose, strategy=strategy,
        )
        Evaluator(trainer.model, self.dataset.class_names).check_tta(self.tta)
        return trainer

    def settle_split(self, folder: RunFolder, split: DatasetSplit,
                     files: Mapping[str, Path]) -> DatasetSplit:
        """Mark the run folder as training; the split it saved (resuming), or save this one."""
        folder.mark("training")
        if folder.previous is not None and files["split"].exists():
            return self.dataset.load_split(files["split"])
        split.save(files["split"])
        return split

    def train(self, folder: RunFolder, trainer: Trainer, split: DatasetSplit,
              files: Mapping[str, Path], epochs: int, cache: str | None, recipe: str,
              policy: str, *, training: ImageFolderDataset | None = None
              ) -> tuple[DatasetSplit, TrainingHistory]:
        """Fit in the run folder (resuming its split and checkpoint if it has them), on
        ``training`` when given (the split's training images and pseudo-labelled photos)."""
        split = self.settle_split(folder, split, files)
        return split, self.fit(trainer, split, epochs, cache, recipe, policy,
                               resume=folder.previous is not None, training=training)

    def held_out(self, split: DatasetSplit) -> DatasetSplit:
        """The split's training images, parted into the first model's and those its
        temperature is fitted on (:func:`~fruitclf.data.unlabeled.calibration_split`)."""
        return calibration_split(split.training, seed=self.seed,
                                 group_duplicates=self.group_duplicates)

    def pseudo_label(self, folder: RunFolder, plan: Recipe, policy: str, split: DatasetSplit,
                     held: DatasetSplit, files: Mapping[str, Path], cache: str | None,
                     verbose: str | int, strategy: Any, leaks: list[LeakedPair]
                     ) -> tuple[DatasetSplit, PseudoLabels]:
        """Train the first model on ``held.training``, fit its temperature on
        ``held.validation``, and label the unlabelled photos with it (scoring it on the test
        folder, to compare with); or read the labels a previous run of this folder wrote."""
        assert self.unlabeled is not None
        path = files["pseudo_labels"]
        if folder.previous is not None and path.exists() and files["split"].exists():
            labels = PseudoLabels.load(path)
            logger.info("Resuming with the labels the first model gave the unlabelled photos "
                        "(%s).", path)
            return self.dataset.load_split(files["split"]), labels
        settled = self.settle_split(folder, split, files)
        if settled is not split:  # resuming: the split the run saved
            split, held = settled, self.held_out(settled)
        first_split = dataclasses.replace(split, training=held.training)
        epochs = (plan.epochs_for(len(held.training)) if self.epochs is None
                  else self.epochs)
        logger.info("First, a model of %d labelled images, to label the %d unlabelled photos; "
                    "%d more are held out to measure how far its confidence can be trusted.",
                    len(held.training), len(self.unlabeled), len(held.validation))
        teacher = self.trainer(plan, policy, {"last_checkpoint": files["teacher"]}, verbose,
                               strategy)
        history = self.fit(teacher, first_split, epochs, cache, plan.name, policy,
                           resume=folder.previous is not None and files["teacher"].exists())
        evaluator = Evaluator(_plain(teacher), self.dataset.class_names,
                              preprocessing=self.preprocessing)
        labels, checked = self.label_photos(evaluator, held.validation)
        scores = {"train_seconds": round(history.seconds, 3),
                  "trained_on": len(held.training),
                  "calibration_images": len(held.validation),
                  "calibration_accuracy": checked.accuracy}
        if self.test is not None:
            first = self.evaluate_test(evaluator, leaks)
            scores["test_accuracy"] = first.accuracy
            without = _leakage_metrics(leaks, first, self.drop_leaked).get(
                "test_accuracy_without_leaked")
            if without is not None:
                scores["test_accuracy_without_leaked"] = without
        labels = dataclasses.replace(labels, first_model=scores)
        labels.save(path)
        _log_labels(labels, checked, self.dataset.class_names)
        return split, labels

    def label_photos(self, evaluator: Evaluator, held_out: ImageFolderDataset
                     ) -> tuple[PseudoLabels, EvaluationResult]:
        """Fit the first model's temperature on the held-out labelled images and label the
        unlabelled photos with its scaled probabilities."""
        from .stats import fit_temperature

        assert self.unlabeled is not None
        checked = evaluator.evaluate(held_out, batch_size=self.batch_size, tta=self.tta)
        temperature = fit_temperature(checked.probabilities, checked.y_true)
        predictions = evaluator.predict(self.unlabeled, batch_size=self.batch_size,
                                        tta=self.tta)
        return PseudoLabels.from_predictions(
            self.unlabeled, predictions.probabilities, self.pseudo_label_threshold,
            self.refused, temperature=temperature), checked

    def fit(self, trainer: Trainer, split: DatasetSplit, epochs: int, cache: str | None,
            recipe: str, policy: str, *, resume: bool,
            training: ImageFolderDataset | None = None) -> TrainingHistory:
        """Build the pipelines (each worker's share of the files under a strategy), fit on
        ``training`` (default: the split's training images)."""
        strategy = trainer.strategy
        training = split.training if training is None else training
        where = device_description() + distribute.summary(strategy, self.batch_size)
        logger.info("Training %s on %d images for %d epochs on %s, %s precision (%s recipe).",
                    self.spec.name, len(training), epochs, where, policy, recipe)
        val_tf = (split.validation.to_tf_dataset(preprocessing=self.preprocessing,
                                                 batch_size=self.batch_size, cache=cache)
                  if len(split.validation) else None)
        steps = None
        train_tf: Any
        if strategy is None:
            train_tf = training.to_tf_dataset(
                preprocessing=self.preprocessing, batch_size=self.batch_size, shuffle=True,
                seed=self.seed, cache=cache)
        else:
            replicas = int(strategy.num_replicas_in_sync)
            if not (resume and _checkpoint_done(trainer, epochs)):  # no step: no collective
                logger.info("Training split %s (the same on every worker).",
                            distribute.check_workers_agree(strategy, training.paths))
            train_tf = self._shard_pipeline(training, cache)
            steps = distribute.shard_steps(len(training), self.batch_size, replicas)
        history = trainer.fit(train_tf, val_tf, epochs=epochs, resume=resume,
                              num_train_images=len(training), steps_per_epoch=steps)
        if not history.epochs_run:
            raise TrainingError("Training ran no epoch; nothing to save.")
        return history

    def _shard_pipeline(self, training: ImageFolderDataset, cache: str | None) -> Any:
        """A function of the input context: this worker's share of the training files (those
        it checked: every n-th file of the folder, whose kept images it holds), in batches of
        ``batch_size`` per replica."""

        def pipeline(context: Any) -> Any:
            paths = training.paths
            index, count = context.input_pipeline_id, context.num_input_pipelines
            checked = share_of(self.dataset.paths, index, count)
            if self.unlabeled is not None:  # one process (multi-worker is refused)
                checked += share_of(self.unlabeled.paths, index, count)
            mine = set(paths).intersection(checked)
            share = training.exclude(p for p in paths if p not in mine)
            logger.info("Worker %d of %d reads %d of %d training images.",
                        context.input_pipeline_id, context.num_input_pipelines, len(share),
                        len(paths))
            return share.to_tf_dataset(preprocessing=self.preprocessing,
                                       batch_size=self.batch_size, shuffle=True,
                                       seed=self.seed, cache=cache)

        return pipeline

    def work_for_chief(self, plan: Recipe, strategy: Any, policy: str, verbose: str | int,
                       cache: str | None, resume: bool) -> RunResult:
        """A worker other than the chief: its share of the check, the same split and model,
        its share of the files, no file written. The chief checks the test folder and writes
        the run folder."""
        _require_clean(self.dataset, "training", self.preprocessing, strategy)
        files = _run_files(self.out_dir, plan)
        split = self.dataset.split(self.validation_split, seed=self.seed,
                                    group_duplicates=self.group_duplicates)
        if resume and files["split"].exists():
            split = self.dataset.load_split(files["split"])
        trainer = self.trainer(plan, policy, files, verbose, strategy)
        epochs = plan.epochs_for(len(split.training)) if self.epochs is None else self.epochs
        if resume and _checkpoint_done(trainer, epochs):  # the chief has nothing to train
            logger.info("Nothing to resume: the run in %s has trained every epoch.",
                        self.out_dir)
            history = TrainingHistory.from_dict(
                read_metadata(files["last_checkpoint"]).get("history") or {})
        else:
            history = self.fit(trainer, split, epochs, cache, plan.name, policy,
                               resume=resume and files["last_checkpoint"].exists())
        index, _ = distribute.role(strategy)
        metrics = {**history.summary(), **distribute.describe(strategy, self.batch_size)}
        return RunResult(self.out_dir, metrics, history, None, trainer.model,
                         self.dataset.class_names, self.spec, {}, {}, worker=index)

    def evaluate_test(self, evaluator: Evaluator, leaks: list[LeakedPair]) -> EvaluationResult:
        """The test folder's evaluation (without the leaked images with ``drop_leaked``)."""
        assert self.test is not None
        leaked = {p.test_path for p in leaks}
        return evaluator.evaluate(self.test.exclude(leaked) if self.drop_leaked else self.test,
                                  batch_size=self.batch_size, tta=self.tta)

    def evaluate_and_report(self, folder: RunFolder, model: keras.Model, split: DatasetSplit,
                            history: TrainingHistory, config: RunConfig,
                            files: dict[str, Path], leaks: list[LeakedPair],
                            distribution: Mapping[str, Any], *,
                            training: ImageFolderDataset | None = None,
                            pseudo: PseudoLabels | None = None) -> RunResult:
        """Evaluate, look for label errors, write the final files together, mark complete."""
        evaluator = Evaluator(model, self.dataset.class_names, preprocessing=self.preprocessing)
        evaluation = None
        if self.test is not None:
            evaluation = self.evaluate_test(evaluator, leaks)
        suspects = _possible_label_errors(evaluator, split, self.batch_size)
        metrics = _metrics(history, evaluation, split_sizes=(len(split.training),
                                                             len(split.validation)))
        metrics.update(distribution)
        if self.test is not None:
            metrics.update(_leakage_metrics(leaks, evaluation, self.drop_leaked))
        if pseudo is not None:
            metrics.update(unlabeled_images=len(pseudo.images),
                           pseudo_labeled_images=len(pseudo.kept),
                           unlabeled_refused=len(pseudo.refused))
            metrics.update((f"first_model_{k}", v) for k, v in pseudo.first_model.items())
        trained = split.training if training is None else training
        index = trained.fingerprint_index(progress=False) if self.training_index else None
        figures = _write_final_files(folder, files, model, self.dataset, self.test, config,
                                     self.spec, self.preprocessing, history, metrics,
                                     evaluation, self.seed, Findings(leaks, suspects, pseudo),
                                     index)
        folder.mark("complete", files, stopped_early=history.stopped_early)
        return RunResult(folder.path, metrics, history, evaluation, model,
                         self.dataset.class_names, self.spec, figures, files, leaks, suspects)


#: How many possible label errors the report shows.
LABEL_ERRORS_SHOWN = 16


@dataclasses.dataclass
class Findings:
    """What a run found in the data besides the metrics: leaked test images and possible
    label errors."""

    leakage: list[LeakedPair]
    label_errors: list[Misclassified]
    pseudo_labels: PseudoLabels | None = None


#: The warning of a run whose test folder has images with a twin in training (its template:
#: ``fruitclf learning-curve`` lets it through once for all its runs).
LEAKAGE_WARNING = ("%d of %d test images have a twin in the %s (e.g. %s ~ %s, %s), "
                   "so the test accuracy %s. The report lists them all.")


def _unlabeled(folder: str | os.PathLike[str], dataset: ImageFolderDataset,
               test: ImageFolderDataset | None, *, follow_links: bool) -> ImageFolderDataset:
    """The photos of the unlabelled folder, refusing one that holds labelled images."""
    photos = ImageFolderDataset.unsorted(folder, class_names=dataset.class_names,
                                         follow_links=follow_links)
    for role, labelled in (("training", dataset), ("test", test)):
        if labelled is None:
            continue
        theirs = {os.path.realpath(p) for p in labelled.paths}
        shared = [p for p in photos.paths if os.path.realpath(p) in theirs]
        if shared:
            raise DatasetError(
                f"The unlabeled folder {photos.root!r} holds {len(shared)} images of the "
                f"{role} folder {labelled.root!r} (e.g. {shared[0]!r}). Pass a folder of "
                "photos that are in neither, such as photos still to be sorted.")
    return photos


def _log_labels(labels: PseudoLabels, checked: EvaluationResult, class_names: list[str]
                ) -> None:
    """Say how the first model did on the held-out images and how many photos it kept."""
    right, held = round(checked.accuracy * len(checked.y_true)), len(checked.y_true)
    if labels.kept:
        counts = labels.kept_counts(class_names)
        logger.info("The first model was right on %d of %d held-out labelled images "
                    "(temperature %.2f). It gave %d of %d unlabelled photos a class with "
                    "calibrated confidence >= %g (%s); they train the final model with the "
                    "labelled images.", right, held, labels.temperature, len(labels.kept),
                    len(labels.images), labels.threshold,
                    ", ".join(f"{name} {n}" for name, n in counts.items()))
    else:
        logger.warning("The first model was right on %d of %d held-out labelled images "
                       "(temperature %.2f), and none of the %d unlabelled photos reached a "
                       "calibrated confidence of %g: the final model trains on the labelled "
                       "images alone. Labelling more photos helps more here.", right, held,
                       labels.temperature, len(labels.images), labels.threshold)


def _leakage(train: ImageFolderDataset, test: ImageFolderDataset, drop_leaked: bool,
             unlabeled: ImageFolderDataset | None = None) -> list[LeakedPair]:
    """Test images with a twin in training (or among the unlabelled photos, which train
    too), from the fingerprints the check just took."""
    leaks = train.find_leakage(test, progress=False)
    if unlabeled is not None:
        leaks = sorted([*leaks, *unlabeled.find_leakage(test, progress=False)],
                       key=lambda p: (p.test_path, p.path))
    leaked = sorted({p.test_path for p in leaks})
    if not leaked:
        return leaks
    if drop_leaked and len(leaked) == len(test):
        raise DatasetError(
            f"All {len(test)} test images have a twin in the training folder "
            f"{train.root!r}, so nothing is left to evaluate without them. Use a test folder "
            "of other photos."
        )
    first = leaks[0]
    logger.warning(
        LEAKAGE_WARNING, len(leaked), len(test),
        "training folder" if unlabeled is None else "training or unlabeled folder",
        first.test_path, first.path, first.kind,
        "is measured without them (--drop-leaked)" if drop_leaked else
        "counts them; --drop-leaked (drop_leaked=True) evaluates without them",
    )
    return leaks


def _leakage_metrics(leaks: list[LeakedPair], evaluation: EvaluationResult | None,
                     drop_leaked: bool) -> dict[str, Any]:
    leaked = {p.test_path for p in leaks}
    metrics: dict[str, Any] = {"num_leaked_test_images": len(leaked)}
    if drop_leaked:
        metrics["leaked_test_images_dropped"] = True
    elif leaked and evaluation is not None:
        kept = evaluation.without(leaked)
        metrics["test_accuracy_without_leaked"] = kept.accuracy if len(kept.y_true) else None
        if len(kept.y_true):
            metrics["test_accuracy_without_leaked_interval"] = list(kept.accuracy_interval)
    return metrics


def _possible_label_errors(evaluator: Evaluator, split: DatasetSplit, batch_size: int
                           ) -> list[Misclassified]:
    """Training and validation images the trained model most confidently calls another
    class: a wrong folder, or an image that does not show its class."""
    wrong: list[Misclassified] = []
    for part in (split.training, split.validation):
        if len(part):
            wrong += evaluator.evaluate(part, batch_size=batch_size).misclassified()
    return sorted(wrong, key=lambda m: -m.confidence)


def _write_final_files(
    folder: RunFolder, files: dict[str, Path], model: keras.Model,
    dataset: ImageFolderDataset, test: ImageFolderDataset | None, config: RunConfig,
    model_spec: CNNSpec, preprocessing: Preprocessing, history: TrainingHistory,
    metrics: dict[str, Any], evaluation: EvaluationResult | None, seed: int,
    findings: Findings, training_index: FingerprintIndex | None = None,
) -> dict[str, Figure]:
    """Write the models, figures, metrics and report under temporary names, then commit."""
    out_dir = folder.path
    summary = {**history.summary(), **{k: v for k, v in metrics.items() if k.startswith("test_")},
               "tta": config.tta}  # the views the test numbers used: evaluate's default
    for role in ("model.h5", "model.keras"):
        with folder.stage(RUN_FILE[role].name) as tmp:
            save_model(model, tmp, class_names=dataset.class_names,
                       preprocessing=preprocessing, spec=model_spec, training=summary,
                       training_index=training_index)
        files[role] = out_dir / RUN_FILE[role].name

    figures: dict[str, Figure] = {
        "history": history.plot(),
        "samples": dataset.plot_samples(rows=2, seed=seed, background=preprocessing.background),
    }
    if findings.label_errors:  # none: the report says so in a sentence, no empty figure
        figures["label_errors"] = plot_misclassified(
            findings.label_errors[:LABEL_ERRORS_SHOWN],
            suptitle="Possible label errors (given -> predicted)")
    texts: dict[str, str] = {}
    if findings.leakage:
        texts["leakage"] = json.dumps(
            [p.to_dict() for p in findings.leakage], indent=2) + "\n"
    if evaluation is not None:
        figures["confusion_matrix"] = evaluation.plot_confusion_matrix()
        figures["misclassified"] = evaluation.plot_misclassified()
        figures["calibration"] = evaluation.plot_calibration()
        attention = (_attention_figure(model, evaluation, test, preprocessing)
                     if test is not None else None)
        if attention is not None:
            figures["attention"] = attention
        texts["classification_report"] = evaluation.classification_report() + "\n"
        texts["predictions"] = evaluation.to_csv(root=test.root if test is not None else None)
    pngs = {RUN_FILE[role].name: _report.figure_png(fig) for role, fig in figures.items()}
    for role in figures:
        with folder.stage(RUN_FILE[role].name) as tmp:
            tmp.write_bytes(pngs[RUN_FILE[role].name])
        files[role] = out_dir / RUN_FILE[role].name
    texts["metrics"] = json.dumps(metrics, indent=2) + "\n"
    files.update({role: out_dir / RUN_FILE[role].name
                  for role in (*texts, "metrics", "report", "report_html")})
    sections = _report_sections(dataset, test, config, model_spec, metrics, evaluation, files,
                                findings)
    title = f"fruitclf run report: {out_dir}"
    texts["report"] = _report.render_markdown(title, sections)
    texts["report_html"] = _report.render_html(title, sections, pngs)
    for role, text in texts.items():
        with folder.stage(files[role].name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    folder.commit()
    return figures


def _finished_run(out_dir: Path, folder: RunFolder, class_names: list[str],
                  model_spec: CNNSpec) -> RunResult:
    """The result of a complete run, read back without changing any file."""
    from .io import load_model

    assert folder.previous is not None  # a complete run was found
    files = {role: out_dir / name for role, name in folder.previous.get("files", {}).items()}
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"The finished run in {str(out_dir)!r} has no readable "
                             f"metrics.json ({exc}). Pass --overwrite to train again.") from None
    history = TrainingHistory.load(out_dir / "history.json")
    model = load_model(out_dir / "model.keras").model
    return RunResult(out_dir, metrics, history, None, model, class_names, model_spec, {}, files)


def _metrics(history: TrainingHistory, evaluation: EvaluationResult | None,
             split_sizes: tuple[int, int]) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "val_accuracy": history.best("val_accuracy"),
        "val_loss": history.best("val_loss"),
        "train_accuracy": history.best("accuracy"),
        "train_loss": history.best("loss"),
        "best_epoch": history.best_epoch,
        "epochs_run": history.epochs_run,
        "stopped_early": history.stopped_early,
        "train_seconds": round(history.seconds, 3),
        "images_per_second": round(history.images_per_second, 2),
        "num_train_images": split_sizes[0],
        "num_val_images": split_sizes[1],
    }
    if history.non_finite_epoch is not None:
        metrics["non_finite_epoch"] = history.non_finite_epoch
    if evaluation is not None:
        metrics["test_accuracy"] = evaluation.accuracy
        metrics["test_accuracy_interval"] = list(evaluation.accuracy_interval)
        metrics["test_loss"] = evaluation.loss
        metrics["test_calibration_error"] = evaluation.calibration_error
        metrics["num_test_images"] = len(evaluation.y_true)
    return metrics


def _leakage_section(leaks: list[LeakedPair], metrics: Mapping[str, Any],
                     unlabeled: bool = False) -> _report.Section:
    title = "Train/test leakage"
    where = "the training or unlabeled folder" if unlabeled else "the training folder"
    leaked = len({p.test_path for p in leaks})
    if not leaked:
        return _report.Section(title, [_report.text(
            f"No test image has a twin in {where}.")])
    total = metrics.get("num_test_images", 0) + (
        leaked if metrics.get("leaked_test_images_dropped") else 0)
    lines = [f"{leaked} of {total} test images have a twin (an exact or near duplicate) in "
             f"{where}."]
    if metrics.get("leaked_test_images_dropped"):
        lines += ["They were left out of the evaluation: the test metrics above are measured "
                  f"on the other {metrics.get('num_test_images')}."]
    else:
        without = metrics.get("test_accuracy_without_leaked")
        shown = "n/a" if without is None else f"{without:.4f}"
        lines += [f"Test accuracy with them: {metrics.get('test_accuracy', 0.0):.4f}; "
                  f"without them: {shown} (`--drop-leaked` evaluates without them)."]
    blocks = [_report.text(" ".join(lines)), _report.table(
        ("test image", "training image", "kind", "distance"),
        [(p.test_relpath, p.relpath, p.kind, f"{p.distance:.4f}") for p in leaks[:30]])]
    if len(leaks) > 30:
        blocks.append(_report.text(f"... and {len(leaks) - 30} more pairs in `leakage.json`."))
    return _report.Section(title, blocks)


def _unlabeled_section(labels: PseudoLabels, metrics: Mapping[str, Any],
                       class_names: list[str]) -> _report.Section:
    """What the first model made of the unlabelled photos, and what they bought."""
    first_model = labels.first_model
    lines = [f"{len(labels.images)} readable photos in `{labels.root}`: the first model, "
             f"trained on {first_model.get('trained_on', 0):.0f} of the labelled images, gave "
             f"{len(labels.kept)} of them a class with a calibrated confidence of at least "
             f"{labels.threshold:g}, and those trained the final model with all the labelled "
             "images."]
    if "calibration_images" in first_model:
        right = first_model.get("calibration_accuracy", 0.0)
        held = first_model["calibration_images"]
        lines.append(f"The first model was right on {right:.0%} of the {held:.0f} labelled "
                     "images held out from it; its probabilities were scaled with a temperature of "
                     f"{labels.temperature:.2f} (above 1: it was over-confident) before the "
                     "threshold.")
    if labels.refused:
        lines.append(f"{len(labels.refused)} could not be decoded and were left out: "
                     f"{describe_problems(labels.refused)}.")
    first = first_model.get("test_accuracy")
    if first is not None and metrics.get("test_accuracy") is not None:
        lines.append(f"Test accuracy of the first model: {first:.4f}; of the final model: "
                     f"{metrics['test_accuracy']:.4f}.")
    counts = labels.kept_counts(class_names)
    everyone = dict.fromkeys(class_names, 0)
    for photo in labels.images:
        everyone[photo.predicted] += 1
    return _report.Section("Unlabelled photos", [
        _report.text(" ".join(lines)),
        _report.table(("class", "photos given it", "kept (trained)"),
                      [(name, everyone[name], counts[name]) for name in class_names]),
        _report.text("`pseudo_labels.json` lists every photo with its class and confidence.")])


#: Misclassified test images the run's attention figure shows (with one correct per class).
ATTENTION_WRONG_SHOWN = 8


def _attention_figure(model: keras.Model, evaluation: EvaluationResult,
                      test: ImageFolderDataset, preprocessing: Preprocessing) -> Figure | None:
    """Grad-CAM of the most confidently misclassified test images and of one correct image
    per class, from the images the check kept (no file is decoded again); None for a model
    whose layers do not form one chain."""
    from .attention import explain

    if evaluation.paths is None:
        return None
    chosen = {m.path for m in evaluation.misclassified()[:ATTENTION_WRONG_SHOWN] if m.path}
    right: dict[int, str] = {}
    for path, true, predicted in zip(evaluation.paths, evaluation.y_true, evaluation.y_pred):
        if true == predicted and int(true) not in right:
            right[int(true)] = path
    chosen |= set(right.values())
    if not chosen:
        return None
    shown = test.exclude([p for p in test.paths if p not in chosen])
    images = np.concatenate([np.asarray(x) for x, _ in read_pipeline(shown.to_tf_dataset(
        preprocessing=preprocessing, batch_size=32, shuffle=False))])
    try:
        explanation = explain(model, images, class_names=evaluation.class_names)
    except ValueError as exc:
        logger.info("No attention figure: %s", exc)
        return None
    return dataclasses.replace(explanation, paths=shown.paths).plot(max_images=len(shown))


def _test_section(evaluation: EvaluationResult) -> _report.Section:
    """The test set: the classification report with intervals, the figures, calibration and
    what answering "unsure" would do."""
    coverage = [(f"{row['threshold']:.2f}", row["answered"], row["coverage"], row["accuracy"])
                for row in evaluation.coverage()]
    return _report.Section("Test set", [
        _report.pre(evaluation.classification_report()),
        _report.image(RUN_FILE["confusion_matrix"].name, "Confusion matrix"),
        _report.image(RUN_FILE["misclassified"].name, "Misclassified images"),
        _report.text(
            f"Calibration error {evaluation.calibration_error:.3f} (expected calibration "
            "error over 10 confidence bins; 0 means every probability is the accuracy it "
            "promises). Bars below the diagonal: the model is over-confident at those "
            "probabilities; above it: under-confident."),
        _report.image(RUN_FILE["calibration"].name, "Reliability diagram"),
        _report.text(
            "Where the model looks (Grad-CAM; red: the regions that made it choose the class "
            "named above each image): the misclassified test images first, then one correct "
            "image per class. A model that looks at the background, the table or a watermark "
            "has learned those instead of the object (`fruitclf explain` for other images)."),
        _report.image(RUN_FILE["attention"].name, "Where the model looks"),
        _report.text(
            "Answering \"unsure\" below a confidence (`fruitclf predict --min-confidence P`): "
            "the share of test images still answered, and the accuracy on them."),
        _report.table(("min confidence", "answered", "coverage", "accuracy"), coverage,
                      digits=3)])


def _label_error_section(suspects: list[Misclassified], root: str) -> _report.Section:
    title = "Possible label errors"
    if not suspects:
        return _report.Section(title, [_report.text(
            "The trained model agrees with the label of every training and validation "
            "image.")])
    return _report.Section(title, [
        _report.text(f"The trained model calls {len(suspects)} training and validation images "
                     "another class. The most confident are shown: look at them for a wrong "
                     "folder or a picture that does not show its class."),
        _report.table(("image", "given", "predicted", "confidence"),
                      [(_report.relative(m.path or "", root), m.true_label, m.predicted_label,
                        f"{m.confidence:.3f}") for m in suspects[:LABEL_ERRORS_SHOWN]]),
        _report.image(RUN_FILE["label_errors"].name, "Possible label errors")])


def _report_sections(
    dataset: ImageFolderDataset, test: ImageFolderDataset | None, config: RunConfig,
    spec: CNNSpec, metrics: Mapping[str, Any], evaluation: EvaluationResult | None,
    files: Mapping[str, Path], findings: Findings,
) -> list[_report.Section]:
    return _report.run_sections(
        metrics=metrics, data_summary=str(dataset.summary()),
        test_summary=str(test.summary()) if test is not None else None,
        settings=config.to_dict(), layers=str(spec.describe()),
        test_set=_test_section(evaluation) if evaluation is not None else None,
        leakage=(_leakage_section(findings.leakage, metrics, findings.pseudo_labels is not None)
                 if test is not None else None),
        unlabeled=(_unlabeled_section(findings.pseudo_labels, metrics, dataset.class_names)
                   if findings.pseudo_labels is not None else None),
        label_errors=_label_error_section(findings.label_errors, dataset.root),
        files=files, versions=versions())
