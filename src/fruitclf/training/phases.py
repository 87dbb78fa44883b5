"""How a model is optimised: the optimizer and its schedule, and the phases of training
(a frozen backbone, then fine-tuning)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model import from_scratch_backbone

if TYPE_CHECKING:
    from ..spec import CNNSpec

__all__ = ["check_combinations", "new_optimizer", "training_phases"]


def check_combinations(optimizer: Any, loss: Any, *, schedule: str, weight_decay: float,
                       label_smoothing: float, reduce_lr_patience: int | None) -> None:
    """Refuse settings that each make sense but not together."""
    if not isinstance(optimizer, str) and (schedule != "constant"
                                           or weight_decay):
        raise ValueError(
            "`schedule` and `weight_decay` apply when `optimizer` is a name such as "
            f"'adamw'; configure your optimizer instance instead. Received: "
            f"optimizer={type(optimizer).__name__}, schedule={schedule!r}, "
            f"weight_decay={weight_decay}"
        )
    if label_smoothing and loss != "sparse_categorical_crossentropy":
        raise ValueError(
            "`label_smoothing` applies to the default loss; pass a loss with its own "
            f"smoothing instead. Received: loss={loss!r}, "
            f"label_smoothing={label_smoothing}"
        )
    if reduce_lr_patience is not None and schedule != "constant":
        raise ValueError(
            "`reduce_lr_patience` changes a constant learning rate; the cosine schedule "
            "sets it at every step. Use one or the other. Received: "
            f"reduce_lr_patience={reduce_lr_patience}, schedule={schedule!r}"
        )


def new_optimizer(optimizer: Any, learning_rate: float, *, schedule: str, weight_decay: float,
                  precision: str, steps: int = 0, warmup_steps: int = 0) -> Any:
    """``optimizer`` (a name or an instance) with the learning rate, on the cosine schedule
    over ``steps`` with ``warmup_steps`` when ``schedule`` is cosine; loss-scaled for
    mixed_float16."""
    import keras

    name = optimizer
    if isinstance(optimizer, str):
        rate: Any = learning_rate
        if schedule == "cosine" and steps > 0:
            warmup_steps = min(warmup_steps, steps - 1)
            rate = keras.optimizers.schedules.CosineDecay(
                rate / 10 if warmup_steps else rate, steps - warmup_steps,
                warmup_target=rate if warmup_steps else None, warmup_steps=warmup_steps)
        config: dict[str, Any] = {"learning_rate": rate}
        if weight_decay:
            config["weight_decay"] = weight_decay
        try:
            optimizer = keras.optimizers.get({"class_name": optimizer, "config": config})
        except ValueError:
            raise ValueError(
                f"Unknown optimizer {name!r}. Use a Keras optimizer name such as "
                "'adam', 'sgd', 'rmsprop', 'adamw', or an optimizer instance."
            ) from None
    if precision == "mixed_float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def training_phases(spec: CNNSpec | None, freeze_epochs: int, epochs: int
                    ) -> list[tuple[int, int, bool]]:
    """``(first epoch, end epoch, fine-tuning)`` of each training phase: one, unless a
    pretrained backbone is frozen for ``freeze_epochs`` and then fine-tuned."""
    layers = spec.fine_tune_layers if spec is not None else 0
    if (spec is None or spec.backbone is None or from_scratch_backbone(spec) or layers == 0
            or freeze_epochs >= epochs):
        return [(0, epochs, False)]
    if freeze_epochs == 0:
        return [(0, epochs, True)]
    return [(0, freeze_epochs, False), (freeze_epochs, epochs, True)]
