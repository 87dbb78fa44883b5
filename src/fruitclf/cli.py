"""The ``fruitclf`` command: the whole job from the shell. The only module that prints."""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ._version import __version__
from .exceptions import FruitclfError, RunFolderError

__all__ = ["build_parser", "main"]

_T = TypeVar("_T")
#: When :func:`main` began: what ``scan --json``'s ``seconds`` counts from.
_STARTED = [time.perf_counter()]

EXAMPLES = {
    "scan": ("fruitclf scan data/train\n  fruitclf scan data/train --test data/test --json > "
             "scan.json\n  fruitclf scan data/train --flag blurry=0.08 --flag grayscale=none"),
    "clean": ("fruitclf clean data/train --dry-run\n  fruitclf clean data/train --quarantine "
              "data/quarantine\n  fruitclf clean data/train --duplicates --dry-run\n"
              "  fruitclf clean data/train --delete"),
    "restore": "fruitclf restore data/train-quarantine",
    "samples": "fruitclf samples data/train --out samples.png --rows 2 --seed 0",
    "spec": ("fruitclf spec --preset small-data --classes 6\n"
             "  fruitclf spec --preset worksheet --image-size 128 --classes 6\n"
             "  fruitclf spec --preset keras-mnist --json > my_spec.json"),
    "train": ("fruitclf train data/train --test data/test --out runs/fruits\n"
              "  fruitclf train data/train --out runs/ws --preset worksheet\n"
              "  fruitclf train data/train --out runs/mnv3 --preset mobilenetv3small "
              "--weights imagenet"),
    "evaluate": ("fruitclf evaluate runs/fruits/model.h5 data/test --out runs/fruits/test\n"
                 "  fruitclf evaluate runs/fruits/model.keras data/test --tta 4"),
    "predict": ("fruitclf predict runs/fruits/model.keras photo1.jpg photos/ --top-k 3 --tta 2\n"
                "  fruitclf predict runs/fruits/model.keras photos/ --min-confidence 0.7"),
    "export": ("fruitclf export runs/fruits/model.keras --out exports/fruits.tflite\n"
               "  fruitclf export runs/fruits/model.keras --out exports/fruits.onnx\n"
               "  fruitclf export runs/fruits/model.keras --format savedmodel --out "
               "exports/fruits\n  fruitclf export runs/fruits/model.keras --out "
               "exports/fruits-int8.tflite --quantize int8 --calibration data/train"),
    "demo": "fruitclf demo --out fruitclf-demo",
    "calibrate": ("fruitclf calibrate runs/fruits/model.keras data/holdout --out "
                  "runs/fruits/calibrated.keras --min-confidence 0.7"),
    "explain": "fruitclf explain runs/fruits/model.keras photos/ --out runs/fruits/explained",
    "learning-curve": ("fruitclf learning-curve data/train --test data/test --out runs/curve\n"
                       "  fruitclf learning-curve data/train --test data/test --out runs/quick "
                       "--seeds 1 --epochs 60"),
    "compare": ("fruitclf compare runs/fruits runs/fruits-mixup\n"
                "  fruitclf compare runs/a runs/b --json --figure disagreements.png"),
}


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # An option whose default is None says in its help where the value comes from.
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _DeprecatedAlias(argparse.Action):
    """Store the value; say so on stderr when the old spelling (the second flag) is used."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string is not None and option_string != self.option_strings[0]:
            print(f"fruitclf: warning: {option_string} is deprecated; use "
                  f"{self.option_strings[0]}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, formatter_class=_Formatter,
        epilog=f"example:\n  {EXAMPLES[name]}",
    )
    return parser


def _weights(value: str) -> str | None:
    return None if value.lower() == "none" else value


#: ``fruitclf train --unlabeled``.
UNLABELED_HELP = ("photos without a class (sub-folders are read too) to train on as well: a "
                  "first model trained on 80%% of the labelled images gives each its class, "
                  "the other 20%% show how far its confidence can be trusted, and the photos "
                  "whose calibrated confidence reaches --pseudo-label-threshold train the "
                  "final model with all the labelled images; about twice the time; needs 20 "
                  "labelled images")


def _add_train_options(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """The run settings, one option each, from their declaration (``fruitclf.settings``)."""
    from .demo import DEMO_SETTINGS
    from .spec import CNNSpec

    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, choices=CNNSpec.PRESETS,
                       help="model preset, trained with its own recipe (default: small-data)")
    group.add_argument("--spec", default=None, metavar="FILE.json",
                       help="model spec JSON file (trained with the small-data recipe)")
    for setting in _command_settings("demo" if demo else "train"):
        _add_setting(p, setting, DEMO_SETTINGS.get(setting.name) if demo else None)
    _add_run_folder_options(p)


def _command_settings(command: str, skip: tuple[str, ...] = ()) -> list[Any]:
    """The declared settings the command takes as options, less ``skip``."""
    from .settings import SETTINGS

    return [s for s in SETTINGS.values() if command in s.commands and s.name not in skip]


def _setting_values(args: argparse.Namespace, command: str, skip: tuple[str, ...] = ()
                    ) -> dict[str, Any]:
    """``run()``'s keywords from the options of the command's settings."""
    values = {s.name: getattr(args, s.name) for s in _command_settings(command, skip)}
    values["cache"] = None if args.cache == "none" else args.cache
    return values


def _add_setting(p: argparse.ArgumentParser, setting: Any,
                 override: tuple[Any, str] | None) -> None:
    """One option: flag, type, choices, default and help from the setting's declaration."""
    from .settings import FROM_RECIPE

    default, help_text = setting.default, setting.help
    if override is not None:
        default, reason = override
        help_text = help_text.split(" (")[0] + f" ({reason})"
    elif default is FROM_RECIPE:
        default, help_text = None, f"{help_text} (default: {setting.default_text()})"
    kwargs: dict[str, Any] = {"dest": setting.name, "default": default, "help": help_text}
    if setting.kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = _CLI_TYPES.get(setting.name, setting.kind)
        kwargs["choices"] = setting.choices
        if setting.choices is None:
            kwargs["metavar"] = setting.metavar
    if setting.aliases:
        kwargs["action"] = _DeprecatedAlias
        kwargs["help"] += f"; {', '.join(setting.aliases)} is the old spelling"
    p.add_argument(setting.flag, *setting.aliases, **kwargs)


#: Options whose text is parsed before the library sees it.
_CLI_TYPES: dict[str, Callable[[str], Any]] = {"weights": _weights}


def _add_distribution_options(p: argparse.ArgumentParser) -> None:
    """Several devices or machines: the strategy and the worker's place in the cluster."""
    from .distribute import STRATEGIES

    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="where to train: auto = every worker of TF_CONFIG's cluster, else "
                   "every GPU when there are several, else one device")
    p.add_argument("--workers", default=None, metavar="HOST:PORT,HOST:PORT,...",
                   help="multi-worker training without TF_CONFIG: every worker's address, "
                   "the same list on each (implies --strategy multi_worker)")
    p.add_argument("--task-index", type=int, default=None, metavar="N",
                   help="this worker's place in --workers (0: the chief, which writes --out)")
    p.add_argument("--connect-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="multi-worker: give up when the other workers have not all started "
                   "within this time")


def _add_run_folder_options(p: argparse.ArgumentParser) -> None:
    """How a run uses its folder: checkpoints, resume or overwrite, progress bars."""
    run_group = p.add_mutually_exclusive_group()
    run_group.add_argument("--resume", action="store_true",
                           help="continue the run in --out where it stopped (same settings; "
                           "a finished run is left as it is)")
    run_group.add_argument("--overwrite", action="store_true",
                           help="replace the run in --out (removes that run's files first)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines or notes: only warnings, errors and the results")


def _add_data_commands(sub: Any) -> None:
    """scan, clean, restore, samples: the commands that read and tidy image folders."""
    from .settings import NEAR_DUPLICATE_THRESHOLD

    p = _add(sub, "scan", "Count classes and images, report image sizes, every file that "
             "would crash training, duplicate photos, images that are dark, bright, blurry, "
             "uniform, grey, oddly shaped or tiny, and (with --test) test images that are also "
             "training images. Changes nothing.")
    p.add_argument("dir", help="folder with one sub-folder per class")
    p.add_argument("--test", default=None, metavar="TEST_DIR",
                   help="also check this test folder, and list its images that have a twin "
                   "in DIR (leakage)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_follow_links(p)
    p.add_argument("--image-size", type=int, default=_default_image_size(),
                   help="model input side in pixels, for the too_small flag")
    p.add_argument("--flag", action="append", default=[], metavar="NAME=VALUE",
                   help="change a quality threshold (none turns a flag off): "
                   + ", ".join(_quality_fields()))
    p.add_argument("--duplicate-threshold", type=float, default=None, metavar="D",
                   help="fingerprint distance for near duplicates (default "
                   f"{NEAR_DUPLICATE_THRESHOLD}, lowered in folders of look-alike images; lower "
                   "finds fewer, closer copies)")

    p = _add(sub, "clean", "Move (default) or delete the files that would crash training, "
             "and with --duplicates all but one copy of each duplicate photo.")
    p.add_argument("dir", help="folder with one sub-folder per class")
    p.add_argument("--duplicates", action="store_true",
                   help="also remove duplicates: keep the copy with the most pixels of each "
                   "group (copies filed under different classes are left alone)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--quarantine", metavar="QDIR", default=None,
                       help="move files here (default: DIR-quarantine beside DIR)")
    where.add_argument("--delete", action="store_true", help="delete instead of moving")
    p.add_argument("--dry-run", action="store_true", help="change nothing, list what would go")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_follow_links(p)

    p = _add(sub, "restore", "Move quarantined files back where they were found.")
    p.add_argument("quarantine", help="the quarantine folder (holds fruitclf-quarantine.json)")
    p.add_argument("--dry-run", action="store_true",
                   help="change nothing, list what would be moved back")
    p.add_argument("--trust-list", action="store_true",
                   help="also restore list entries without a checksum (files still come only "
                        "from the quarantine and go only into the recorded image folder)")

    p = _add(sub, "samples", "Save a grid with one random image per class.")
    p.add_argument("dir", help="folder with one sub-folder per class")
    p.add_argument("--out", required=True, metavar="FILE.png", help="image file to write")
    p.add_argument("--rows", type=int, default=2, help="rows of the grid")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the image picked per class (default: a new pick each time)")
    _add_follow_links(p)


def _add_model_commands(sub: Any) -> None:
    """spec, train, evaluate, predict: the commands about models."""
    from .spec import CNNSpec

    p = _add(sub, "spec", "Show a model spec's layers, output shapes and parameter counts, "
             "with the arithmetic behind them.")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", default="small-data", choices=CNNSpec.PRESETS,
                       help="model preset to show")
    group.add_argument("--spec", default=None, metavar="FILE.json",
                       help="show this spec JSON file instead of a preset")
    p.add_argument("--image-size", type=int, default=None,
                   help="input height and width (default: the preset's or file's)")
    p.add_argument("--channels", type=int, default=None, choices=(1, 3),
                   help="1 grayscale or 3 RGB (default: the preset's or file's)")
    p.add_argument("--classes", type=int, default=None,
                   help="number of classes (default: the preset's or file's: 6 for presets, "
                   "10 for keras-mnist)")
    p.add_argument("--json", action="store_true", help="print the spec as JSON")

    p = _add(sub, "train", "Check the data, train with checkpointing and early stopping, "
             "evaluate, and write the model, curves, report and metrics into --out.")
    p.add_argument("train_dir", help="training folder, one sub-folder per class")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--test", default=None, metavar="TEST_DIR", help="test folder")
    p.add_argument("--unlabeled", default=None, metavar="DIR", help=UNLABELED_HELP)
    p.add_argument("--drop-leaked", action="store_true",
                   help="evaluate without the test images that have a twin in the training "
                   "folder (they are reported either way)")
    p.add_argument("--training-index", action=argparse.BooleanOptionalAction, default=True,
                   help="keep fingerprints of the training images in the model files (99 "
                   "bytes an image), so that `fruitclf evaluate` finds test images the model "
                   "was trained on")
    _add_follow_links(p)
    _add_train_options(p)
    _add_distribution_options(p)

    p = _add(sub, "evaluate", "Accuracy, loss and classification report of a saved model on "
             "a test folder.")
    p.add_argument("model", help="a .keras or .h5 file written by fruitclf")
    p.add_argument("test_dir", help="test folder, one sub-folder per class")
    p.add_argument("--json", action="store_true",
                   help='print {"accuracy", "accuracy_interval", "loss", "report", ...} as '
                   "JSON")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write the report, predictions.csv, the confusion matrix, the "
                   "reliability diagram and the misclassified images")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    _add_tta(p)
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out files that cannot be decoded (default: refuse, naming them)")
    _add_follow_links(p)

    p = _add(sub, "predict", "Predict the class of images (files or folders). A file that "
             "cannot be read is reported on its line; the exit status is then 1.")
    p.add_argument("model", help="a .keras or .h5 file written by fruitclf")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--top-k", type=int, default=1, help="classes to show per image")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="answer 'unsure' when the best probability is below P (0-1); the run "
                   "report shows accuracy and coverage at a few values")
    p.add_argument("--json", action="store_true", help="print one JSON array")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    _add_tta(p)
    _add_follow_links(p)


def _add_tta(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tta", type=int, default=None, metavar="N",
                   help="test-time augmentation: views averaged per image (1: off; default: "
                   "the views the model's run measured its test accuracy with)")


def _add_follow_links(p: argparse.ArgumentParser) -> None:
    """The same option on every command that reads image folders."""
    p.add_argument("--follow-links", action="store_true",
                   help="follow links to folders (skipped otherwise, with a warning naming them)")


def _add_export_command(sub: Any) -> None:
    """export: a saved model to SavedModel, TFLite or ONNX."""
    from .export import FORMATS, QUANTIZATIONS

    p = _add(sub, "export", "Export a saved model to SavedModel, TFLite or ONNX for use "
             "elsewhere: same input as the model (0-255 pixels at its size), class names "
             "inside the file where the format allows and always in OUT.labels.txt and "
             "OUT.json beside it. The export is run on a few images and compared with the "
             "model.")
    p.add_argument("model", help="a .keras or .h5 file written by fruitclf")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="a .tflite or .onnx file, or a folder for a SavedModel")
    p.add_argument("--format", default=None, choices=FORMATS,
                   help="export format (default: from the suffix of --out: .tflite, .onnx; "
                   "no suffix: savedmodel)")
    p.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                   help="TFLite only: float16 halves the file, int8 quarters it (needs "
                   "--calibration)")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="images like those the model will see, e.g. the training folder: "
                   "calibrate int8 and check the export on them (default: random images)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing export and its .labels.txt/.json files")
    _add_follow_links(p)


def _add_demo_command(sub: Any) -> None:
    """demo: the built-in dataset and the train job on it."""
    p = _add(sub, "demo", "Write the built-in demo dataset (scikit-learn's handwritten digits "
             "as PNG folders, no download) and run the train job on it.")
    p.add_argument("--out", default="fruitclf-demo", metavar="DIR",
                   help="demo folder: data/ and run/ go inside")
    _add_train_options(p, demo=True)


def build_parser() -> argparse.ArgumentParser:
    """Return the argparse parser of the ``fruitclf`` command (the docs render it)."""
    parser = argparse.ArgumentParser(
        prog="fruitclf",
        description="Train, evaluate and use image classifiers on folders of images sorted "
                    "into one sub-folder per class.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  fruitclf demo\n  fruitclf scan data/train\n"
               "  fruitclf train data/train --test data/test --out runs/fruits",
    )
    parser.add_argument("--version", action="version", version=f"fruitclf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show everything: TensorFlow's start-up messages and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_calibrate_command(sub)
    _add_compare_command(sub)
    _add_explain_command(sub)
    _add_curve_command(sub)
    _add_export_command(sub)
    _add_demo_command(sub)
    return parser


def _add_calibrate_command(sub: Any) -> None:
    p = _add(sub, "calibrate", "Make a model's probabilities mean what they say: fit a "
             "temperature on labelled photos it did not train on (not the test folder it is "
             "judged on), and write a copy of the model that keeps it.")
    p.add_argument("model", help="a .keras or .h5 file written by fruitclf")
    p.add_argument("folder", help="held-out photos, one sub-folder per class (photos the "
                   "model trained on are left out)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the calibrated model, .keras or .h5 (never replaces a file)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="also store this threshold: predict answers 'unsure' below it")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    _add_tta(p)
    _add_follow_links(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate_model

    result = calibrate_model(args.model, args.folder, args.out,
                             min_confidence=args.min_confidence, tta=args.tta,
                             batch_size=args.batch_size, follow_links=args.follow_links)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.summary())
    return 0


def _add_curve_command(sub: Any) -> None:
    p = _add(sub, "learning-curve", "Would more photos help? Trains the recipe on 25/50/75/100 "
             "percent of each class's photos (several seeds), tests every model on TEST, plots "
             "accuracy against photos per class and says what the fitted curve expects at "
             "twice the photos.")
    p.add_argument("train_dir", help="training folder, one sub-folder per class")
    p.add_argument("--test", required=True, metavar="TEST_DIR",
                   help="test folder every model is measured on")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for learning_curve.png, learning_curve.json and the runs")
    p.add_argument("--fractions", default="0.25,0.5,0.75,1", metavar="F,F,...",
                   help="shares of each class's photos")
    p.add_argument("--seeds", default="1,2,3", metavar="N,N,...",
                   help="one run per share and seed (it picks the photos and seeds the run)")
    p.add_argument("--json", action="store_true", help="print the curve as JSON")
    _add_follow_links(p)
    from .spec import CNNSpec

    p.add_argument("--preset", default=None, choices=CNNSpec.PRESETS,
                   help="model preset, trained with its own recipe (default: small-data)")
    for setting in _command_settings("train", skip=("seed",)):  # --seeds sets each run's
        _add_setting(p, setting, None)


def _cmd_curve(args: argparse.Namespace) -> int:
    from .curve import learning_curve

    def numbers(text: str, kind: type, option: str) -> list[Any]:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"`{option}` must be numbers separated by commas. Received: "
                             f"{option} {text}") from None

    options = {**_setting_values(args, "train", skip=("seed",)),
               "spec": args.preset or "small-data"}
    curve = learning_curve(args.train_dir, test_dir=args.test, out=args.out,
                           fractions=numbers(args.fractions, float, "--fractions"),
                           seeds=numbers(args.seeds, int, "--seeds"),
                           follow_links=args.follow_links, **options)
    if args.json:
        _print_json(curve.to_dict())
        return 0
    for share, photos, row, median, (low, high) in zip(
            curve.fractions, curve.photos_per_class, curve.accuracy, curve.medians,
            curve.intervals):
        runs = ", ".join(f"{a:.3f}" for a in row)
        print(f"{share:>5.0%} ({photos:.1f} photos a class): median {median:.3f} (95% interval "
              f"{low:.3f}-{high:.3f}); runs {runs}")
    print(curve.sentence)
    print(f"Wrote {Path(args.out) / 'learning_curve.png'} and learning_curve.json")
    return 0


def _add_explain_command(sub: Any) -> None:
    p = _add(sub, "explain", "Where the model looks: Grad-CAM heat maps of images (files or "
             "folders) over the images, in DIR/attention.png, and as arrays in "
             "DIR/heatmaps.npz.")
    p.add_argument("model", help="a .keras or .h5 file written by fruitclf")
    p.add_argument("paths", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for attention.png "
                   "and heatmaps.npz")
    p.add_argument("--max-images", type=int, default=16, metavar="N",
                   help="images drawn in attention.png (heatmaps.npz has all)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    _add_follow_links(p)


def _cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from . import _files
    from ._ownership import EXPLANATION_FILES, check_outside
    from ._runfolder import claim_output_folder
    from .attention import explain
    from .io import load_model

    out = Path(args.out)
    check_outside(out, {f"image folder {p!r}": p for p in args.paths if os.path.isdir(p)},
                  "out")
    loaded = load_model(args.model)
    explanation = explain(loaded, args.paths, batch_size=args.batch_size,
                          follow_links=args.follow_links)
    for path, reason in explanation.errors.items():
        print(f"{path}: error: {reason}")
    if not len(explanation.heatmaps):
        raise ValueError("No image could be read, so nothing was explained.")
    name = {f.role: out / f.name for f in EXPLANATION_FILES}
    claim_output_folder(out, EXPLANATION_FILES, {"model": os.path.abspath(args.model),
                                                 "images": len(explanation.heatmaps)})
    _files.save_figure(explanation.plot(max_images=args.max_images), name["attention"])
    with _files.atomic_open(name["heatmaps"], "wb") as handle:
        np.savez_compressed(handle, heatmaps=explanation.heatmaps.astype(np.float16),
                            paths=np.array(explanation.paths or []),
                            predicted=np.array(explanation.predicted),
                            targets=np.array(explanation.targets),
                            class_names=np.array(explanation.class_names))
    print(f"Explained {len(explanation.heatmaps)} images (Grad-CAM on {explanation.layer}): "
          f"{name['attention']} and {name['heatmaps']}")
    return 1 if explanation.errors else 0


def _add_compare_command(sub: Any) -> None:
    p = _add(sub, "compare", "Is run B better than run A? Compares two runs (or `evaluate "
             "--out` folders) photo by photo on the same test images: both accuracies, the "
             "difference with its 95 percent interval, McNemar's exact test, and a plain sentence.")
    p.add_argument("run_a", metavar="RUN_A",
                   help="a run folder trained with --test, an `evaluate --out` folder, or its "
                   "predictions.csv")
    p.add_argument("run_b", metavar="RUN_B", help="the same, for the other run")
    p.add_argument("--json", action="store_true",
                   help='print {"a_accuracy", "b_accuracy", "difference", '
                   '"difference_interval", "p_value", "only_a_correct", "only_b_correct", ...}')
    p.add_argument("--figure", default=None, metavar="FILE.png",
                   help="also draw the photos only one run got right")


# ------------------------------------------------------------------------------ commands


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _default_image_size() -> int:
    from .config import Recipe

    return Recipe.preset("small-data").image_size


def _quality_fields() -> list[str]:
    from .data.quality import QualityThresholds

    return [f.name for f in dataclasses.fields(QualityThresholds)]


def _listing(lines: list[str], limit: int = 20) -> list[str]:
    more = [f"  ... and {len(lines) - limit} more (--json lists all)"] if len(lines) > limit else []
    return [f"  {line}" for line in lines[:limit]] + more


def _scan_text(duplicates: list[Any], quality: list[Any], leakage: list[Any] | None,
               num_test: int) -> list[str]:
    out: list[str] = []
    if duplicates:
        extra = sum(len(g.paths) - 1 for g in duplicates)
        out.append(f"Duplicates: {len(duplicates)} groups ({extra} files beyond one copy each):")
        out += _listing([f"{g.kind}: " + " = ".join(g.relpaths)
                         + ("  [different classes]" if g.conflicting else "")
                         for g in duplicates])
    else:
        out.append("Duplicates: none found.")
    if quality:
        out.append(f"Quality flags: {len(quality)} (scores and thresholds in --json):")
        out += _listing([f"{q.relpath}: {q.message}" for q in quality])
    else:
        out.append("Quality flags: none.")
    if leakage is not None:
        leaked = len({p.test_path for p in leakage})
        if leaked:
            out.append(f"Leakage: {leaked} of {num_test} test images have a twin in the "
                       "training folder:")
            out += _listing([f"{p.test_relpath} ~ {p.relpath} ({p.kind})" for p in leakage])
        else:
            out.append("Leakage: no test image has a twin in the training folder.")
    return out


def _cmd_scan(args: argparse.Namespace) -> int:
    from .data import ImageFolderDataset
    from .data.quality import QualityThresholds

    thresholds = QualityThresholds.from_strings(args.flag)
    with _notes_left_to_summary():  # scan prints the summary, which names the same things
        ds = ImageFolderDataset(args.dir, follow_links=args.follow_links)
    test = (ImageFolderDataset(args.test, class_names=ds.class_names,
                               follow_links=args.follow_links) if args.test else None)
    summary = ds.summary()
    progress = None if not args.json else False
    steps: dict[str, float] = {}

    def timed(step: str, work: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        try:
            return work()
        finally:
            steps[step] = round(time.perf_counter() - start, 3)

    report = timed("check", lambda: ds.check(progress=progress))
    duplicates = timed("duplicates",
                       lambda: ds.find_duplicates(threshold=args.duplicate_threshold))
    quality = timed("quality", lambda: ds.quality_issues(thresholds=thresholds,
                                                         image_size=args.image_size))
    test_report = (timed("test_check", lambda: test.check(progress=progress))
                   if test is not None else None)
    leakage = (timed("leakage", lambda: ds.find_leakage(test, threshold=args.duplicate_threshold))
               if test is not None else None)
    if args.json:
        payload: dict[str, Any] = {
            "root": ds.root, "classes": summary.class_counts, "num_images": summary.num_images,
            "empty_classes": summary.empty_classes, "width": summary.width,
            "height": summary.height, "imbalance_ratio": summary.imbalance_ratio,
            "problems": [p.to_dict() for p in report.problems],
            "ignored": [{"path": i.path, "reason": i.reason} for i in ds.ignored],
            "duplicates": [g.to_dict() for g in duplicates],
            "quality": [q.to_dict() for q in quality],
            # The whole command (TensorFlow's import included), then each step of it.
            "seconds": round(time.perf_counter() - _STARTED[0], 3), "steps": steps,
        }
        if test is not None and test_report is not None and leakage is not None:
            payload["test"] = {"root": test.root, "num_images": len(test),
                               "problems": [p.to_dict() for p in test_report.problems]}
            payload["leakage"] = [p.to_dict() for p in leakage]
        _print_json(payload)
        return 0
    print(summary)
    print(report)
    if test_report is not None:
        print(test_report)
    for line in _scan_text(duplicates, quality, leakage, len(test) if test else 0):
        print(line)
    return 0


@contextlib.contextmanager
def _notes_left_to_summary() -> Any:
    """Hold back the notes a dataset logs when it is found (links not followed, nested
    folders), for a command that prints its summary: each is said once."""
    logger = logging.getLogger("fruitclf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _cmd_clean(args: argparse.Namespace) -> int:
    from .data import ImageFolderDataset

    ds = ImageFolderDataset(args.dir, follow_links=args.follow_links)
    result = ds.remove_corrupted(quarantine=args.quarantine, delete=args.delete,
                                 dry_run=args.dry_run)
    copies = (ds.remove_duplicates(quarantine=args.quarantine, delete=args.delete,
                                   dry_run=args.dry_run) if args.duplicates else None)
    if args.json:
        payload = result.to_dict()
        if copies is not None:
            payload["duplicates"] = copies.to_dict()
        _print_json(payload)
        return 0
    for line in result.lines():
        print(line)
    if copies is not None:
        for line in copies.lines() if copies.removed or copies.skipped else [
                "No duplicates to remove."]:
            print(line)
    moved = result.removed or (copies is not None and copies.removed)
    if moved and not args.dry_run and not args.delete:
        print(f"Quarantine: {result.quarantine} (restore with `fruitclf restore "
              f"{result.quarantine}`)")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from .data.quarantine import restore_quarantine

    restored = restore_quarantine(args.quarantine, dry_run=args.dry_run,
                                  trust_list=args.trust_list)
    verb = "Would restore" if args.dry_run else "Restored"
    for path in restored:
        print(f"{verb}: {path}")
    if not restored:
        print("Nothing to restore.")
    for path in restored.unaccounted:
        print(f"Not in the quarantine list, left where it is: {path}")
    return 1 if restored.unaccounted else 0


def _cmd_samples(args: argparse.Namespace) -> int:
    from ._ownership import check_outside
    from .data import ImageFolderDataset

    check_outside(args.out, {"image folder": args.dir}, "out")
    _claim_figure(args.out, "samples", "a sample grid", "--out")
    fig = ImageFolderDataset(args.dir, follow_links=args.follow_links).plot_samples(
        rows=args.rows, seed=args.seed)
    _save_command_figure(fig, args.out, "samples")
    print(f"Wrote {args.out}")
    return 0


def _claim_figure(path: str, command: str, what: str, option: str) -> None:
    """Refuse a figure path that holds a file this command did not write."""
    from ._ownership import is_command_figure

    if os.path.lexists(path) and not is_command_figure(path, command):
        raise RunFolderError(
            f"{path!r} exists and is not {what} fruitclf wrote; fruitclf never replaces a file "
            f"it did not write. Choose another {option}, or move it away.")


def _save_command_figure(figure: Any, path: str, command: str) -> None:
    """Save a figure, marked as this command's when it is a PNG (so a later run of the
    command may replace it, and nothing else may be)."""
    from ._files import save_figure
    from ._ownership import FIGURE_SOFTWARE

    png = Path(path).suffix.lower() == ".png"
    save_figure(figure, path, metadata={"Software": FIGURE_SOFTWARE[command]} if png else None)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs

    if args.figure:
        _claim_figure(args.figure, "compare", "a comparison figure", "--figure")
    comparison = compare_runs(args.run_a, args.run_b)
    if args.figure:
        _save_command_figure(comparison.plot_disagreements(), args.figure, "compare")
    if args.json:
        _print_json(comparison.to_dict())
        return 0
    low, high = comparison.difference_interval
    width = len(max(comparison.a, comparison.b, key=len))
    print(f"A: {comparison.a:<{width}}  accuracy {comparison.a_accuracy:.4f}")
    print(f"B: {comparison.b:<{width}}  accuracy {comparison.b_accuracy:.4f}")
    print(f"B - A: {comparison.difference:+.4f} (95% interval {low:+.4f} to {high:+.4f}) on "
          f"{comparison.num_images} test images")
    print(f"only A right: {comparison.only_a_correct}, only B right: "
          f"{comparison.only_b_correct}, both: {comparison.both_correct}, neither: "
          f"{comparison.neither_correct}; McNemar exact p = {comparison.p_value:.4f}")
    print(comparison.sentence)
    if args.figure:
        print(f"Wrote {args.figure}")
    return 0


def _cmd_spec(args: argparse.Namespace) -> int:
    from .spec import CNNSpec

    spec = CNNSpec.from_json(args.spec) if args.spec else CNNSpec.preset(args.preset)
    if args.image_size is not None:
        spec = spec.with_image_size(args.image_size)
    if args.channels is not None:
        spec = spec.replace(input_shape=(*spec.input_shape[:2], args.channels))
    if args.classes is not None:
        spec = spec.replace(num_classes=args.classes)
    if args.json:
        print(spec.to_json(), end="")
    else:
        print(spec.describe())
    return 0


def _train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``run()``'s keywords from the options: one per declared setting, and the rest."""
    return {**_setting_values(args, args.command, skip=("augment",)),
            "spec": args.spec or args.preset or "small-data",
            "resume": args.resume, "overwrite": args.overwrite,
            "verbose": 0 if args.quiet else "auto"}


def _print_run(result: Any) -> None:
    from .report import key_metrics

    shown = key_metrics(result.metrics)
    width = max((len(key) for key, _ in shown), default=0)
    print()
    for key, value in shown:
        print(f"{key:>{width}}: {value:.4f}" if isinstance(value, float) else
              f"{key:>{width}}: {value}")
    print(f"\nModel:  {result.files['model.h5']} and {result.files['model.keras']}")
    print(f"Report: {result.report_html_path} (and {result.report_path.name})")


def _cmd_train(args: argparse.Namespace) -> int:
    from .job import run

    strategy = args.strategy
    if (args.workers is None) != (args.task_index is None):
        raise ValueError("`--workers` and `--task-index` go together: pass both (every "
                         "worker's HOST:PORT, and this worker's place in that list).")
    if args.workers is not None:
        from .distribute import set_cluster

        set_cluster(args.workers, args.task_index)
        strategy = "multi_worker" if strategy == "auto" else strategy
    _watch_connection(args.connect_timeout)
    result = run(args.train_dir, out=args.out, test_dir=args.test, unlabeled=args.unlabeled,
                 augment=args.augment,
                 drop_leaked=args.drop_leaked, follow_links=args.follow_links,
                 training_index=args.training_index, strategy=strategy,
                 **_train_kwargs(args))
    if result.worker:
        print(f"\nWorker {result.worker}: trained {result.history.epochs_run} epochs; the "
              f"chief (worker 0) writes the run folder {result.out_dir}.")
        return 0
    _print_run(result)
    return 0


_WATCHDOG = """
import os, select, signal, sys
ready, _, _ = select.select([int(sys.argv[1])], [], [], float(sys.argv[3]))
if not ready:
    sys.stderr.write(sys.argv[4] + "\\n")
    sys.stderr.flush()
    os.kill(int(sys.argv[2]), signal.SIGKILL)
"""


def _watch_connection(timeout: float) -> None:
    """End the process with one line if a multi-worker cluster does not come together in
    time. TensorFlow waits for the other workers inside the strategy's constructor, in C++
    that holds the interpreter: no signal handler or thread of this process runs meanwhile,
    so a small watchdog process does it. It leaves as soon as the cluster is up (or this
    process ends), when the pipe between them closes."""
    import subprocess
    import threading

    from .distribute import CONNECTED, cluster

    if cluster() is None:
        return
    message = (f"fruitclf: error: The other workers of the cluster did not all start within "
               f"{timeout:g} s (--connect-timeout). Start the same command on every worker in "
               "--workers (or TF_CONFIG), each with its own --task-index.")
    read_end, write_end = os.pipe()
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(read_end), str(os.getpid()),
                      str(timeout), message], pass_fds=(read_end,))
    os.close(read_end)

    def release() -> None:
        CONNECTED.wait()
        os.close(write_end)

    threading.Thread(target=release, name="fruitclf-connected", daemon=True).start()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import ImageFolderDataset
    from .io import load_model

    if args.out:
        from ._ownership import check_outside

        check_outside(args.out, {"test folder": args.test_dir}, "out")
    from .report import with_interval

    loaded = load_model(args.model)
    tta = loaded.tta if args.tta is None else args.tta
    test = ImageFolderDataset(args.test_dir, class_names=loaded.class_names,
                              follow_links=args.follow_links)
    leaks = (loaded.find_leakage(test, progress=False)
             if loaded.training_index is not None else None)
    result = loaded.evaluator().evaluate(test, batch_size=args.batch_size, tta=tta,
                                         skip_bad=args.skip_bad)
    leakage = _evaluation_leakage(leaks, result)
    if args.out:
        _write_evaluation(Path(args.out), result, args, leakage)
    if args.json:
        _print_json({"accuracy": result.accuracy,
                     "accuracy_interval": list(result.accuracy_interval), "loss": result.loss,
                     "calibration_error": result.calibration_error, "tta": tta,
                     "report": result.classification_report(output_dict=True), **leakage})
        return 0
    for problem in result.skipped:
        print(f"skipped: {problem.path}: {problem.message}")
    metrics = {"accuracy": result.accuracy, "accuracy_interval": result.accuracy_interval,
               **leakage}
    views = f", {tta} test-time views" if tta > 1 else ""
    print(f"accuracy: {with_interval(metrics, 'accuracy')} on {len(result.y_true)} "
          f"images{views}\nloss:     {result.loss:.4f}")
    if leakage["num_leaked_test_images"]:
        without = leakage["accuracy_without_leaked"]
        print(f"accuracy without the {leakage['num_leaked_test_images']} test images the "
              "model was trained on: " + ("(none left)" if without is None else
                                          with_interval(metrics, "accuracy_without_leaked")))
    print(f"calibration error: {result.calibration_error:.3f}")
    print()
    print(result.classification_report())
    if args.out:
        print(f"Wrote report and figures to {args.out}")
    return 0


def _evaluation_leakage(leaks: list[Any] | None, result: Any) -> dict[str, Any]:
    """What ``evaluate`` reports of the test images the model was trained on (from the
    fingerprints its file keeps; ``leakage_checked`` is False for a model without them), and
    a warning naming them."""
    logger = logging.getLogger("fruitclf")
    if leaks is None:
        logger.info("The model keeps no fingerprints of its training images: test images it "
                    "was trained on are not looked for (`fruitclf scan TRAIN --test TEST` "
                    "compares the folders).")
        return {"leakage_checked": False, "num_leaked_test_images": None,
                "accuracy_without_leaked": None, "accuracy_without_leaked_interval": None,
                "leakage": []}
    leaked = [p.test_path for p in leaks]
    without = interval = None
    if leaks:
        kept = result.without(leaked)
        if len(kept.y_true):
            without, interval = kept.accuracy, list(kept.accuracy_interval)
        kinds = collections.Counter(p.kind for p in leaks)
        names = ", ".join(p.test_relpath for p in leaks[:5]) + (
            f" and {len(leaks) - 5} more" if len(leaks) > 5 else "")
        logger.warning(
            "%d of %d test images are copies of images the model was trained on (%s): %s. "
            "They measure memory, not generalisation; the accuracy without them is %s.",
            len(leaks), len(result.y_true),
            ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()), names,
            "not defined (no test image is left)" if without is None else f"{without:.4f}")
    return {"leakage_checked": True, "num_leaked_test_images": len(leaks),
            "accuracy_without_leaked": without, "accuracy_without_leaked_interval": interval,
            "leakage": [{"test_path": p.test_relpath, "kind": p.kind, "distance": p.distance}
                        for p in leaks]}


def _write_evaluation(out: Path, result: Any, args: argparse.Namespace,
                      leakage: dict[str, Any]) -> None:
    """The files of ``evaluate --out``, declared in ``_ownership.EVALUATION_FILES``: a
    folder holding files of those names that fruitclf did not write is refused."""
    from . import _files
    from ._ownership import EVALUATION_FILES
    from ._runfolder import claim_output_folder

    name = {f.role: out / f.name for f in EVALUATION_FILES}
    claim_output_folder(out, EVALUATION_FILES, {"model": os.path.abspath(args.model),
                                                "test_dir": os.path.abspath(args.test_dir)})
    _files.write_text(name["classification_report"], result.classification_report() + "\n")
    _files.write_json(name["evaluation"], {**result.to_dict(), **leakage})
    _files.write_text(name["predictions"], result.to_csv(root=args.test_dir))
    _files.save_figure(result.plot_calibration(), name["calibration"])
    _files.save_figure(result.plot_confusion_matrix(), name["confusion_matrix"])
    _files.save_figure(result.plot_misclassified(), name["misclassified"])


def _cmd_predict(args: argparse.Namespace) -> int:
    from .io import load_model

    if args.top_k < 1:
        raise ValueError(f"`--top-k` must be a positive int. Received: --top-k {args.top_k}")
    loaded = load_model(args.model)
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        raise ValueError("`--min-confidence` must be a probability between 0 and 1. "
                         f"Received: --min-confidence {args.min_confidence}")
    predictions = loaded.predict(args.paths, top_k=args.top_k, batch_size=args.batch_size,
                                 tta=args.tta, follow_links=args.follow_links,
                                 min_confidence=args.min_confidence)
    records = predictions.to_records()
    status = 1 if any("error" in record for record in records) else 0
    if args.json:
        _print_json(records)
        return status
    for record in records:
        if "error" in record:
            print(f"{record['path']}: error: {record['error']}")
            continue
        if record.get("unsure"):
            best = record["top_k"][0]
            print(f"{record['path']}: unsure (best: {best['label']} "
                  f"{best['probability']:.3f}, below {predictions.min_confidence:g})")
            continue
        others = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in record["top_k"][1:])
        print(f"{record['path']}: {record['label']} ({record['probability']:.3f})"
              + (f"  [{others}]" if others else ""))
    return status


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    result = export_model(args.model, args.out, format=args.format, quantize=args.quantize,
                          calibration=args.calibration, overwrite=args.overwrite,
                          follow_links=args.follow_links)
    print(result.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_AUGMENTATION, write_demo_dataset
    from .job import run

    out = Path(args.out)
    data_dir = out / "data"
    marker = data_dir / ".fruitclf-demo"
    demo_folder = marker.exists()
    demo = write_demo_dataset(data_dir, image_size=args.image_size, overwrite=demo_folder)
    marker.write_text("Written by `fruitclf demo`.\n", encoding="utf-8")
    print(f"Demo data: {demo.num_train} training and {demo.num_test} test images in "
          f"{data_dir} (scikit-learn digits)")
    kwargs = _train_kwargs(args)
    # The demo folder is fruitclf's own: a new demo replaces the last one's run.
    kwargs["overwrite"] = kwargs["overwrite"] or (demo_folder and not args.resume)
    result = run(demo.train_dir, out=out / "run", test_dir=demo.test_dir,
                 augment=DEMO_AUGMENTATION if args.augment else False, **kwargs)
    _print_run(result)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scan": _cmd_scan, "clean": _cmd_clean, "restore": _cmd_restore, "samples": _cmd_samples,
    "compare": _cmd_compare, "calibrate": _cmd_calibrate, "explain": _cmd_explain,
    "learning-curve": _cmd_curve,
    "spec": _cmd_spec, "train": _cmd_train, "evaluate": _cmd_evaluate,
    "predict": _cmd_predict, "export": _cmd_export, "demo": _cmd_demo,
}


def _quiet_third_party_logs() -> None:
    from . import _quiet

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    _quiet.install()  # TensorFlow's C++ start-up lines, whenever it is first imported


def _command_parser(parser: argparse.ArgumentParser, command: str
                    ) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action.choices, dict) and command in action.choices:
            found: argparse.ArgumentParser = action.choices[command]
            return found
    return None


def _suggest_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Exit with "did you mean" when the command is a near miss of a real one."""
    import difflib

    words = [arg for arg in argv if not arg.startswith("-")]
    if not words or words[0] in COMMANDS:
        return
    close = difflib.get_close_matches(words[0], list(COMMANDS), n=1, cutoff=0.6)
    if close:
        parser.error(f"unknown command {words[0]!r}; did you mean {close[0]!r}? "
                     f"(commands: {', '.join(COMMANDS)})")


def _cli_wording(message: str, parser: argparse.ArgumentParser | None) -> str:
    """Name the command's options as typed: `validation_split` -> `--validation-split`,
    and ``Received: validation_split=2`` -> ``Received: --validation-split 2``."""
    if parser is None:
        return message
    head, sep, tail = message.partition("Received: ")
    for action in parser._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if not flags or action.dest in ("help", "version"):
            continue
        head = head.replace(f"`{action.dest}`", f"`{flags[0]}`")
        tail = re.sub(rf"(?<![\w-]){re.escape(action.dest)}=", f"{flags[0]} ", tail)
    return head + sep + tail


#: Set by the command's Ctrl-C handler. An interrupt that lands inside an extension
#: module's import (numpy asks for ``datetime`` through ``PyCapsule_Import``) reaches Python
#: as an ``ImportError`` that no longer carries the ``KeyboardInterrupt``; the flag still
#: says what happened.
_interrupt_received = False


#: The packages whose Python code C or C++ calls back into: the import system, TensorFlow,
#: Keras.
_CALLED_BACK = frozenset({"_frozen_importlib", "_frozen_importlib_external", "importlib",
                          "tensorflow", "keras", "tf_keras"})


def _held_back_at(frame: Any) -> bool:
    """Whether a Ctrl-C arriving at ``frame`` (the frame a signal handler was given) must
    wait: an import, or TensorFlow's or Keras's code, is anywhere on the stack."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] in _CALLED_BACK:
            return True
        frame = frame.f_back
    return False


#: How often a held-back Ctrl-C asks again whether it can be raised.
_DEFERRED_POLL = 0.05


def _record_interrupts() -> None:
    """Make Ctrl-C set :data:`_interrupt_received`, then raise ``KeyboardInterrupt`` as
    Python's own handler does. Only the command installs it; a program that imports
    fruitclf keeps its own handler.

    A ``KeyboardInterrupt`` raised inside code that C or C++ called back (what an extension
    module runs while it is imported; TensorFlow's tracing and nest utilities) can be printed
    there as a traceback, or turned into a ``SystemError``, and lost. So while an import, or
    TensorFlow's or Keras's code, is anywhere on the stack, the interrupt is held back and
    raised at the first moment the stack holds neither (a timer asks every 50 ms), as
    Python itself waits for a long TensorFlow operation to return; a second Ctrl-C raises at
    once. Without ``signal.setitimer`` (Windows) it is raised at once.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    can_wait = hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM")

    def interrupt(signum: int, frame: Any) -> None:
        global _interrupt_received
        again = _interrupt_received and signum == signal.SIGINT
        _interrupt_received = True
        if can_wait and not again and _held_back_at(frame):
            signal.signal(signal.SIGALRM, interrupt)
            signal.setitimer(signal.ITIMER_REAL, _DEFERRED_POLL)
            return
        _stop_asking()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)


def _stop_asking() -> None:
    """Cancel the timer of a held-back Ctrl-C: once the interrupt is raised, or the command
    is done, its signal would end the process unhandled."""
    import signal

    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, the user's Ctrl-C."""
    return isinstance(exc, KeyboardInterrupt) or (
        _interrupt_received and not isinstance(exc, SystemExit))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fruitclf`` command; returns the exit status.

    Errors in the input print one line, ``fruitclf: error: ...``, and exit with status 1
    (2 for unknown options, as argparse does).
    """
    _STARTED[0] = time.perf_counter()
    try:
        parser = build_parser()
        argv = list(sys.argv[1:] if argv is None else argv)
        _suggest_command(parser, argv)
        args = parser.parse_args(argv)
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        print("fruitclf: interrupted.", file=sys.stderr)
        return 130
    if args.verbose:
        from . import _quiet

        _quiet.show_everything()
    else:
        _quiet_third_party_logs()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("fruitclf")
    logger.addHandler(handler)
    logger.propagate = False  # TensorFlow's absl setup adds a root handler: print once
    # clean/restore print their own per-file lines; JSON output must stay the only stdout.
    # --quiet: no progress and no notes, only warnings, errors and the final summary.
    quiet = (getattr(args, "json", False) or getattr(args, "quiet", False)
             or args.command in ("clean", "restore"))
    logger.setLevel(logging.DEBUG if args.verbose else
                    logging.WARNING if quiet else logging.INFO)
    os.environ["MPLBACKEND"] = "Agg"  # figures go to files; importing matplotlib waits
    try:
        return COMMANDS[args.command](args)
    except BaseException as exc:
        if _interrupted(exc):
            detail = f": {exc}" if isinstance(exc, KeyboardInterrupt) and str(exc) else ""
            hint = (" Run the same command with --resume to continue."
                    if args.command in ("train", "demo") else "")
            print(f"fruitclf: interrupted{detail}.{hint}", file=sys.stderr)
            return 130
        if isinstance(exc, (FruitclfError, ValueError, TypeError)):
            message = _cli_wording(str(exc), _command_parser(parser, args.command))
            print(f"fruitclf: error: {message}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError):  # disk full, permissions: one line naming the path
            where = f" {exc.filename!r}" if exc.filename else ""
            print(f"fruitclf: error:{where} {exc.strerror or exc}", file=sys.stderr)
            return 1
        raise
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def entry_point() -> None:
    """The ``fruitclf`` command: :func:`main`, then a quick exit.

    Once TensorFlow is loaded, the interpreter's normal teardown (TensorFlow's thread pools
    and modules) takes most of a second after the work is done. Every file is written and
    closed by then, so the command flushes its output and leaves at once.
    """
    _record_interrupts()
    try:
        code = main()
    except BaseException as exc:  # between two steps of main's own handling
        if not _interrupted(exc):
            raise
        print("fruitclf: interrupted.", file=sys.stderr)
        code = 130
    _stop_asking()
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
