"""The training loss with label smoothing for integer labels.

Keras's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this loss one-hot encodes
the integer labels and applies Keras's categorical cross-entropy with smoothing, so pipelines
keep yielding integer labels.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="fruitclf")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):  # type: ignore[misc]
    """Cross-entropy of integer labels against probabilities, with label smoothing.

    A smoothing of ``s`` trains towards ``1 - s + s/k`` for the true class and ``s/k`` for
    the other ``k - 1`` classes.
    """

    def __init__(self, label_smoothing: float = 0.1,
                 name: str = "smoothed_sparse_categorical_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        target = keras.ops.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(target, y_pred,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config["label_smoothing"] = self.label_smoothing
        return config
