"""dlib's face descriptor ResNet and CNN face detector rebuilt as Keras 3 models with dlib's weights.

The layers come from `phototag.dlib_dat.read_dat`, in forward order. Each affine layer (a batch norm
frozen for test time) is folded into the convolution before it, which changes the sums only in the
last float bits. Residual blocks follow dlib's templates in `dnn_face_recognition_ex.cpp`: a block
starts at a convolution that follows a relu or the max pool (dlib's `tag1`), and its `add_prev`
adds either the block's input or, when an average pool stands between, the input pooled 2x2
(`skip1` + `avg_pool`). dlib adds tensors of different sizes by treating what is missing as zeros;
`_PadAdd` does the same, since in the last two levels the pooled input is larger than the block's
output (4x4 against 3x3, 2x2 against 1x1) and has fewer channels.

The models take dlib's input tensor, (pixel - mean) / 256, NHWC. Importing this module imports
Keras: only conversion and the GPU path need it; a scan on a CPU runs the converted LiteRT files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dlib_dat import Layer

__all__ = ["build_descriptor", "build_detector", "fold_affine"]


def _keras() -> Any:
    from ..runtime import import_keras

    return import_keras()


def fold_affine(layers: list[Layer]) -> list[Layer]:
    """The same network with every affine layer folded into the convolution it follows."""
    out: list[Layer] = []
    for layer in layers:
        if layer.kind == "affine" and out and out[-1].kind == "con":
            con = out[-1]
            g, b = layer.weights["gamma"], layer.weights["beta"]
            con.weights = dict(filters=con.weights["filters"] * g[:, None, None, None],
                               biases=con.weights["biases"] * g + b)
            continue
        if layer.kind == "affine":
            raise ValueError("an affine layer that does not follow a convolution")
        out.append(Layer(layer.kind, layer.version, dict(layer.params), dict(layer.weights)))
    return out


def _pad_add_layer() -> Any:
    keras = _keras()
    ops = keras.ops

    class _PadAdd(keras.layers.Layer):
        """dlib's add_prev: the sum of two tensors, the smaller one zero-padded (bottom, right, channels)."""

        def call(self, a, b):  # noqa: D102
            sa, sb = a.shape, b.shape
            h, w, c = (max(sa[i], sb[i]) for i in (1, 2, 3))

            def pad(t):
                s = t.shape
                if (s[1], s[2], s[3]) == (h, w, c):
                    return t
                return ops.pad(t, [[0, 0], [0, h - s[1]], [0, w - s[2]], [0, c - s[3]]])

            return pad(a) + pad(b)

    return _PadAdd


def _mask_layer() -> Any:
    keras = _keras()

    class _Mask(keras.layers.Layer):
        """Zeroes what lies outside a tensor's real extent, so a tensor padded to a common shape gives
        the padded convolutions dlib's zero border: the same scores as the tensor alone."""

        def call(self, x, mask):  # noqa: D102
            return x * mask

    return _Mask


def _conv(keras: Any, layer: Layer, name: str) -> Any:
    (kh, kw), (sy, sx), (py, px) = layer.params["size"], layer.params["stride"], layer.params["padding"]
    if (py, px) == (0, 0):
        padding = "valid"
    elif (sy, sx) == (1, 1) and (py, px) == (kh // 2, kw // 2):
        padding = "same"
    else:
        raise ValueError(f"convolution padding {py, px} with stride {sy, sx} is not one dlib's face networks use")
    conv = keras.layers.Conv2D(layer.params["filters"], (kh, kw), strides=(sy, sx), padding=padding, name=name)
    # dlib stores filters as (out, in, rows, cols) and correlates, as Keras does.
    conv.build((None, None, None, layer.weights["filters"].shape[1]))
    conv.set_weights([np.transpose(layer.weights["filters"], (2, 3, 1, 0)), layer.weights["biases"]])
    return conv


def _pool(keras: Any, layer: Layer, name: str) -> Any:
    (kh, kw), (sy, sx), (py, px) = layer.params["size"], layer.params["stride"], layer.params["padding"]
    if (kh, kw) == (0, 0):
        return keras.layers.GlobalAveragePooling2D(name=name)
    if (py, px) != (0, 0):
        raise ValueError("padded pooling is not one dlib's face networks use")
    cls = keras.layers.MaxPooling2D if layer.kind == "max_pool" else keras.layers.AveragePooling2D
    return cls((kh, kw), strides=(sy, sx), padding="valid", name=name)


def _build(layers: list[Layer], input_shape: tuple[Any, ...], name: str, masked: bool = False) -> Any:
    keras = _keras()
    PadAdd, Mask = _pad_add_layer(), _mask_layer()
    body = [layer for layer in fold_affine(layers) if layer.kind not in ("input", "loss")]
    inputs = keras.Input(shape=input_shape, name="tensor")
    mask = keras.Input(shape=(None, None, 1), name="mask") if masked else None
    x = inputs
    block_input = x  # dlib's tag1: the input of the current residual block
    pooled_input = None  # skip1 + avg_pool: the block's input, pooled, when the block downsamples
    prev = "input"
    in_block = False
    for i, layer in enumerate(body):
        lname = f"{layer.kind}{i}"
        if layer.kind == "con":
            if prev in ("relu", "max_pool") and not in_block:
                block_input, pooled_input, in_block = x, None, True
            conv = _conv(keras, layer, lname)
            if mask is not None and conv.padding == "same":
                x = Mask(name=f"mask{i}")(x, mask)
            x = conv(x)
        elif layer.kind == "relu":
            x = keras.layers.ReLU(name=lname)(x)
        elif layer.kind in ("max_pool", "avg_pool"):
            pool = _pool(keras, layer, lname)
            if layer.kind == "avg_pool" and prev == "con" and in_block:
                pooled_input = pool(block_input)  # the skip branch; x stays the block's output
            else:
                x = pool(x)
        elif layer.kind == "add_prev":
            x = PadAdd(name=lname)(x, pooled_input if pooled_input is not None else block_input)
            in_block = False
        elif layer.kind == "fc":
            dense = keras.layers.Dense(layer.params["outputs"], use_bias="biases" in layer.weights, name=lname)
            dense.build((None, layer.params["inputs"]))
            dense.set_weights([layer.weights["weights"]] + ([layer.weights["biases"]] if "biases" in layer.weights else []))
            x = dense(x)
        else:
            raise ValueError(f"layer {layer.kind} is not one dlib's face networks use")
        prev = layer.kind
    if in_block and any(layer.kind == "add_prev" for layer in body):
        raise ValueError("a residual block without its add_prev")
    return keras.Model([inputs, mask] if mask is not None else inputs, x, name=name)


def build_descriptor(layers: list[Layer]) -> Any:
    """dlib_face_recognition_resnet_model_v1: 150x150 chips in, 128-d descriptors out."""
    nr, nc = layers[0].params["size"]
    return _build(layers, (nr, nc, 3), "dlib_face_descriptor")


def build_detector(layers: list[Layer], masked: bool = False) -> Any:
    """mmod_human_face_detector: a tiled image pyramid in, one score map out (any size). `masked`: a
    second input, 1 over the output's real extent and 0 beyond, for tensors padded to a common shape
    (every padded convolution of this network works at the output's size, after the strided ones)."""
    return _build(layers, (None, None, 3), "dlib_mmod_face_detector", masked)
