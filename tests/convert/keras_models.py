"""Build the Keras models the conversion tests convert, and Keras's own answers.

Run as a script in its own process (TensorFlow and ``clothing.proto`` register
the same proto file names, so they cannot share one):

    python keras_models.py OUT_DIR ROWS.npz

Writes, under OUT_DIR:
- ``small.h5``, ``small.keras``: a small CNN shaped like the course notes'
  model: input layer ``input_8`` (32x32x3 float), 10 logits from ``dense_7``;
- ``small_savedmodel/``: the same weights as a SavedModel whose
  ``serving_default`` signature is named as Keras 2 signed it (``input_8`` in,
  ``dense_7`` out), which is what the notes served with TF Serving;
- ``xception.h5``: Keras's Xception architecture, ``weights=None`` (nothing is
  downloaded), 71x71 (its smallest input), 10 logits;
- ``two_inputs.keras`` and ``flat_input.keras``: models the converter refuses;
- ``reference.npz``: Keras's outputs for every array in ROWS.npz, keyed the
  same (keys starting ``xception`` go to Xception, the rest to the small CNN).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

CLASSES = 10
SMALL_SIDE = 32
XCEPTION_SIDE = 71


def small_network() -> keras.Model:
    keras.utils.set_random_seed(7)
    inputs = keras.Input((SMALL_SIDE, SMALL_SIDE, 3), name="input_8")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, name="dense_7")(x)
    return keras.Model(inputs, outputs)


def save_notes_style_savedmodel(model: keras.Model, path: Path) -> None:
    spec = tf.TensorSpec((None, SMALL_SIDE, SMALL_SIDE, 3), tf.float32, name="input_8")

    @tf.function(input_signature=[spec])
    def serve(input_8: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"dense_7": model(input_8, training=False)}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def refused_models(out: Path) -> None:
    first = keras.Input((SMALL_SIDE, SMALL_SIDE, 3), name="photo")
    second = keras.Input((SMALL_SIDE, SMALL_SIDE, 3), name="mask")
    merged = keras.layers.Concatenate()([first, second])
    pooled = keras.layers.GlobalAveragePooling2D()(merged)
    keras.Model([first, second], keras.layers.Dense(CLASSES)(pooled)).save(out / "two_inputs.keras")
    flat = keras.Input((784,), name="pixels")
    keras.Model(flat, keras.layers.Dense(CLASSES)(flat)).save(out / "flat_input.keras")


def main(out: Path, rows_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    small = small_network()
    small.save(out / "small.h5")
    small.save(out / "small.keras")
    save_notes_style_savedmodel(small, out / "small_savedmodel")
    xception = keras.applications.Xception(
        weights=None,
        input_shape=(XCEPTION_SIDE, XCEPTION_SIDE, 3),
        classes=CLASSES,
        classifier_activation=None,
    )
    xception.save(out / "xception.h5")
    refused_models(out)
    rows = np.load(rows_path)
    reference = {
        key: np.asarray((xception if key.startswith("xception") else small)(rows[key]))
        for key in rows.files
    }
    np.savez(out / "reference.npz", **reference)  # type: ignore[arg-type]  # numpy's stub: allow_pickle


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
