"""Cross-version model check, driven by ``nox -s compat``.

``python check_models.py save DIR`` trains a tiny model on generated images and saves it as
``.h5`` and ``.keras`` with fruitclf, plus the images and the predictions it made.
``python check_models.py load DIR [--must-load]`` loads both files with the TensorFlow/Keras
installed here and compares predictions and metadata. A file that cannot be loaded must fail
with a ``VersionCompatibilityError`` naming both versions; with ``--must-load`` it must load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import fruitclf
from fruitclf._compat import versions


def save(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from _images import write_class_folder

    data = write_class_folder(out / "images", 3, 6, seed=0)
    ds = fruitclf.ImageFolderDataset(data)
    prep = fruitclf.Preprocessing(image_size=(24, 24))
    spec = fruitclf.CNNSpec(input_shape=(24, 24, 3), num_classes=3,
                            conv_blocks=(fruitclf.ConvBlock(4, batch_norm=True),),
                            dense_layers=(fruitclf.DenseLayer(8, dropout=0.2),),
                            augmentation=fruitclf.Augmentation(flip="horizontal"))
    trainer = fruitclf.Trainer(spec, class_names=ds.class_names, seed=0, verbose=0,
                               preprocessing=prep)
    trainer.fit(ds.to_tf_dataset(preprocessing=prep, batch_size=6), epochs=2)
    probs = trainer.model.predict(
        next(iter(ds.to_tf_dataset(preprocessing=prep, batch_size=18)))[0], verbose=0)
    np.save(out / "probabilities.npy", probs)
    for suffix in (".h5", ".keras"):
        fruitclf.save_model(trainer.model, out / f"model{suffix}", class_names=ds.class_names,
                            preprocessing=prep, spec=spec)
    (out / "saved_by.json").write_text(json.dumps(versions()))
    print("saved with", versions())


def load(out: Path, must_load: bool) -> int:
    ds = fruitclf.ImageFolderDataset(out / "images")
    expected = np.load(out / "probabilities.npy")
    written = json.loads((out / "saved_by.json").read_text())
    here = versions()
    print(f"written by TF {written['tensorflow']} / Keras {written['keras']}; "
          f"read by TF {here['tensorflow']} / Keras {here['keras']}")
    failures = 0
    for suffix in (".h5", ".keras"):
        path = out / f"model{suffix}"
        try:
            loaded = fruitclf.load_model(path)
        except fruitclf.VersionCompatibilityError as exc:
            named = all(v in str(exc) for v in (written["keras"], here["keras"]))
            print(f"{suffix}: cannot load, clear error naming both versions: {named}\n  {exc}")
            failures += int(must_load or not named)
            continue
        batch = next(iter(ds.to_tf_dataset(preprocessing=loaded.preprocessing, batch_size=18)))
        probs = loaded.model.predict(batch[0], verbose=0)
        same = np.allclose(probs, expected, atol=1e-5)
        intact = (loaded.class_names == ds.class_names and loaded.metadata["spec"] is not None
                  and fruitclf.CNNSpec.from_dict(loaded.metadata["spec"]).num_classes == 3)
        print(f"{suffix}: loaded; predictions identical: {same} "
              f"(max diff {np.abs(probs - expected).max():.2e}); metadata intact: {intact}")
        failures += int(not (same and intact))
    return failures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("save", "load"))
    parser.add_argument("dir", type=Path)
    parser.add_argument("--must-load", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.mode == "save":
        save(args.dir)
        return 0
    return 1 if load(args.dir, args.must_load) else 0


if __name__ == "__main__":
    sys.exit(main())
