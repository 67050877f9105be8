"""Export a trained head to a LiteRT (.tflite) file beside it, for runtimes that want one.

    python -m training.export_tflite models/age-dlib-mlp.keras

TensorFlow's converter traces the Keras model at a dynamic batch size; the .tflite takes the same
128-d descriptors and returns the same outputs (bench/runtimes.py checks the ages agree).
"""

from __future__ import annotations

import sys
from pathlib import Path


def export_tflite(keras_path: str | Path, out: str | Path | None = None) -> Path:
    import tensorflow as tf

    from phototag.ages.model import import_keras
    from phototag.ages import layers  # noqa: F401  custom layers

    keras = import_keras()
    model = keras.saving.load_model(keras_path, compile=False)
    spec = [tf.TensorSpec([None, 128], tf.float32)]

    @tf.function(input_signature=spec)
    def serve(x):
        return model(x, training=False)

    # Freeze the weights (and the normaliser's statistics) into constants: LiteRT would otherwise
    # look for resource variables at run time, and the outputs come out as NaN.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    out = Path(out) if out else Path(keras_path).with_suffix(".tflite")
    out.write_bytes(converter.convert())
    return out


if __name__ == "__main__":
    print(export_tflite(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
