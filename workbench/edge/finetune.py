"""Fine-tuning shared by every compression technique: one data pipeline, optimizer and
progress bar, counted in optimizer steps (work), not epochs, so a larger dataset does
not multiply the time; and the layer wrapping each tfmot technique starts from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.core import errors, quiet
from workbench.data import pipeline


class TechniqueError(RuntimeError):
    """A compression technique cannot be applied to this model; the message says why."""


# ---------------------------------------------------------------- fine-tuning


def fine_tune(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    input_scale: float | None,
    callbacks: list | None = None,
    augment: bool = False,
    seed: int = 0,
    progress: bool = True,
    desc: str = "fine-tune",
):
    """Compile ``model`` with Adam and train it for ``steps`` optimizer steps.

    Args:
        steps: optimizer steps (batches); 0 only compiles.
        input_scale: the model gets ``pixels * input_scale`` (None: pixels as they are).
        augment: random flips and shifts (see :func:`workbench.data.pipeline.make_dataset`).
    """
    quiet.install()
    recompiled(model, learning_rate)
    if steps <= 0:
        return model
    ds = pipeline.make_dataset(
        x_train,
        y_train,
        batch_size=batch_size,
        training=True,
        augment=augment,
        seed=seed,
        input_scale=input_scale,
    ).repeat()
    cbs = list(callbacks or [])
    if progress:
        cbs.append(step_bar(steps, desc))
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=cbs, verbose=0)
    return model


@dataclass(frozen=True)
class Batches:
    """The fine-tuning data of a technique, set once: images, labels and how they are batched.

    Every technique fine-tunes on the same pipeline (:func:`fine_tune`); a technique builds
    one of these from its arguments and calls :meth:`fit` with what differs between its
    steps (the model, the number of steps, the rate, the callbacks).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    batch_size: int
    input_scale: float | None
    seed: int = 0
    augment: bool = False
    progress: bool = True

    def fit(
        self,
        model,
        *,
        steps: int,
        learning_rate: float,
        desc: str,
        callbacks: list | None = None,
    ):
        """:func:`fine_tune` ``model`` on these batches."""
        return fine_tune(
            model,
            self.x_train,
            self.y_train,
            steps=steps,
            batch_size=self.batch_size,
            learning_rate=learning_rate,
            input_scale=self.input_scale,
            callbacks=callbacks,
            augment=self.augment,
            seed=self.seed,
            progress=self.progress,
            desc=desc,
        )


def step_bar(steps: int, desc: str):  # noqa: N802 - a factory standing in for a class
    """A Keras callback with one progress bar over ``steps`` batches, showing loss and
    accuracy; when training ends the bar is replaced by one summary line
    (:class:`workbench.core.progressbar.ProgressBar`), so a saved notebook shows no bar
    frozen part-way."""
    import tf_keras as keras

    from workbench.core.progressbar import ProgressBar

    class StepBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = ProgressBar(steps, desc, unit="step")

        def on_train_batch_end(self, batch, logs=None):
            shown = {k: v for k, v in (logs or {}).items() if k in ("loss", "accuracy")}
            self.bar.update(1, **(shown if batch % 20 == 0 else {}))

        def on_train_end(self, logs=None):
            shown = {k: v for k, v in (logs or {}).items() if k in ("loss", "accuracy")}
            self.bar.close(**shown)

    return StepBar()


def steps_per_epoch(n: int, batch_size: int) -> int:
    return int(np.ceil(n / batch_size))


def wrap_layers(model, wrap, wanted, *, what: str):
    """A copy of ``model`` whose layers passing ``wanted`` are wrapped by ``wrap``.

    The copy has its own weights (the original is never touched). Raises
    :class:`TechniqueError` when no layer qualifies or tfmot refuses the model.
    """
    import tf_keras as keras

    copy = clone(model)
    chosen: list[str] = []

    def clone_layer(layer):
        if wanted(layer):
            chosen.append(layer.name)
            return wrap(layer)
        return layer

    try:
        wrapped = keras.models.clone_model(copy, clone_function=clone_layer)
    except Exception as err:  # noqa: BLE001 - tfmot and Keras raise many types
        raise TechniqueError(f"{what}: {errors.first_line(err)}") from err
    if not chosen:
        raise TechniqueError(f"{what}: no layer of this model supports it")
    return wrapped


def has_kernel(layer) -> bool:
    return any(is_kernel(w.name) for w in layer.weights)


def is_kernel(name: str) -> bool:
    leaf = name.split("/")[-1].split(":")[0]
    return leaf in ("kernel", "depthwise_kernel", "pointwise_kernel")


def clone(model):
    """A copy of ``model`` with the same weights (tfmot wrappers must not touch the original)."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def kernels(model) -> Iterator[tuple[str, np.ndarray]]:
    """(name, kernel) for every kernel of every layer (conv, depthwise, pointwise, dense)."""
    for layer in model.layers:
        kernels = [w for w in layer.weights if is_kernel(w.name)]
        for w in kernels:
            leaf = w.name.split("/")[-1].split(":")[0]
            name = layer.name if len(kernels) == 1 else f"{layer.name}/{leaf}"
            yield name, np.asarray(w.numpy())


def recompiled(model, learning_rate: float):
    import tf_keras as keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
