"""Read the layers and weights of a dlib DNN `.dat` file in pure Python, without dlib.

dlib serialises a network from its loss layer inwards, and each `add_layer` writes its subnetwork
before its own details, so a file lists the input layer first and the last layer last. Every layer's
details open with a version string ("con_4", "affine_", "relu_", ...): this reader finds each such
string in turn and decodes the details behind it, following dlib's own formats (`dlib/serialize.h`
for numbers and strings, `dlib/cuda/tensor.h` for tensors, `dlib/dnn/*.h` for each layer). The
tags and skips that connect residual blocks carry no details; the architecture that uses these
layers knows where they go. A batch-norm layer saved in training mode ("bn_con2") is folded into the
affine layer dlib itself would make of it at test time.

What comes back is a list of `Layer`s in file (forward) order, with NumPy weights.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["Layer", "read_dat"]


@dataclass
class Layer:
    """One layer's kind ("con", "affine", "relu", "max_pool", "avg_pool", "fc", "add_prev", "input",
    "loss") and what it holds: `params` for shapes and settings, `weights` for arrays."""

    kind: str
    version: str
    params: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)


# Every version string a layer we understand may open with. A layer that is not here (a different
# network) makes the gap check below fail loudly rather than be skipped.
_KINDS = {
    "con_4": "con", "con_5": "con", "con_6": "con",
    "affine_": "affine", "affine_2": "affine", "bn_con2": "affine",
    "relu_": "relu", "relu_2": "relu",
    "max_pool_2": "max_pool", "avg_pool_2": "avg_pool",
    "fc_2": "fc", "fc_3": "fc",
    "add_prev_": "add_prev",
    "input_rgb_image_sized": "input", "input_rgb_image_pyramid": "input", "input_rgb_image_pyramid2": "input",
    "loss_metric_": "loss", "loss_metric_2": "loss", "loss_mmod_": "loss",
}
_NAME = re.compile(b"|".join(re.escape(b"\x01" + bytes([len(v)]) + v.encode()) for v in sorted(_KINDS, key=len, reverse=True)))
# Between two layers' details dlib writes only bookkeeping: version numbers, three booleans and
# empty tensors (before the input layer, the version numbers of every wrapper). A larger gap means we lost our place (or met a layer we do not know).
_MAX_GAP = 256


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.where}: not a dlib network file we can read ({what} at byte {self.pos})")

    def int(self) -> int:
        """dlib's packed integer: a control byte (sign bit, byte count) then little-endian bytes."""
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        ctrl = self.data[self.pos]
        n = ctrl & 0x0F
        if n > 8 or ctrl & 0x70:
            raise self.fail("bad integer")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        """dlib's float_details: a packed mantissa and a packed exponent (value = mantissa * 2**exponent)."""
        if self.pos >= len(self.data) or self.data[self.pos] & 0x70:
            raise self.fail("old text-format number")
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        ch = self.data[self.pos : self.pos + 1]
        self.pos += 1
        if ch not in (b"0", b"1"):
            raise self.fail("bad boolean")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise self.fail("unknown tensor version")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise self.fail("tensor runs past the end of the file")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32)
        self.pos = end
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            raise self.fail("unknown alias_tensor version")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def multipliers(self) -> None:
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            self.float()


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    flat, out, at = params.reshape(-1), [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(flat[at : at + n].reshape(shape))
        at += n
    return out


def _con(r: _Reader, version: str) -> Layer:
    params = r.tensor()
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    fshape, bshape = r.alias(), r.alias()
    r.multipliers()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.bool()  # use_relu: fused relu, only set when training code fuses; dlib files we read do not
    filters, biases = _split(params, fshape, bshape)
    return Layer("con", version,
                 dict(filters=num_filters, size=(nr, nc), stride=(stride_y, stride_x), padding=(pad_y, pad_x)),
                 dict(filters=filters, biases=biases.reshape(-1) if use_bias else np.zeros(num_filters, np.float32)))


def _affine(r: _Reader, version: str) -> Layer:
    params = r.tensor()
    gshape, bshape = r.alias(), r.alias()
    gamma, beta = (a.reshape(-1) for a in _split(params, gshape, bshape))
    if version == "bn_con2":
        r.tensor(), r.tensor()  # the last mini-batch's means and inverse deviations
        means, variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
        r.int(), r.int()  # num_updates, running_stats_window_size
        r.multipliers()
        eps = r.float()
        gamma = (gamma / np.sqrt(variances.astype(np.float64) + eps)).astype(np.float32)
        beta = (beta - gamma * means).astype(np.float32)
    else:
        r.int()  # mode: CONV_MODE (per channel) for every affine layer these networks hold
        if version == "affine_2":
            r.bool()
    return Layer("affine", version, {}, dict(gamma=gamma, beta=beta))


def _pool(r: _Reader, version: str) -> Layer:
    nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
    return Layer(_KINDS[version], version, dict(size=(nr, nc), stride=(sy, sx), padding=(py, px)))


def _fc(r: _Reader, version: str) -> Layer:
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor()
    wshape, bshape = r.alias(), r.alias()
    bias_mode = r.int()
    r.multipliers()
    if version == "fc_3":
        r.bool()
    weights = params.reshape(-1)[: int(np.prod(wshape))].reshape(num_inputs, num_outputs)
    w = dict(weights=weights)
    if bias_mode == 0:  # FC_HAS_BIAS
        w["biases"] = _split(params, wshape, bshape)[1].reshape(-1)
    return Layer("fc", version, dict(outputs=num_outputs, inputs=num_inputs), w)


def _input(r: _Reader, version: str) -> Layer:
    mean = (r.float(), r.float(), r.float())
    params: dict[str, Any] = dict(mean_rgb=mean)
    if version == "input_rgb_image_sized":
        params["size"] = (r.int(), r.int())
    elif version == "input_rgb_image_pyramid2":
        params["pyramid_padding"], params["pyramid_outer_padding"] = r.int(), r.int()
    else:
        params["pyramid_padding"], params["pyramid_outer_padding"] = 10, 11
    return Layer("input", version, params)


def _loss(r: _Reader, version: str) -> Layer:
    if version == "loss_metric_2":
        return Layer("loss", version, dict(margin=r.float(), dist_thresh=r.float()))
    if version == "loss_metric_":
        return Layer("loss", version, dict(margin=0.1, dist_thresh=0.75))
    opts_version = r.int()
    if opts_version == 1:
        windows = [(r.int(), r.int(), "")]
    else:
        windows = []
        for _ in range(r.int()):
            wv = r.int()
            windows.append((r.int(), r.int(), r.string() if wv == 2 else ""))
    params: dict[str, Any] = dict(windows=windows)
    params["loss_per_false_alarm"], params["loss_per_missed_target"] = r.float(), r.float()
    params["truth_match_iou"] = r.float()
    params["nms_iou"], params["nms_covered"] = r.float(), r.float()
    params["ignore_iou"], params["ignore_covered"] = r.float(), r.float()
    if opts_version >= 3:
        params["assume_image_pyramid"] = r.int()
    params["bbox_regression"] = False
    if opts_version >= 4:
        params["bbox_regression"] = r.bool()
        r.float()
    return Layer("loss", version, params)


_READERS = {"con": _con, "affine": _affine, "max_pool": _pool, "avg_pool": _pool, "fc": _fc,
            "input": _input, "loss": _loss}


def read_dat(path: str | Path) -> list[Layer]:
    """Every layer of the dlib network in `path`, input first, then the loss layer last."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from exc
    r = _Reader(data, str(path))
    layers: list[Layer] = []
    loss: Layer | None = None
    while True:
        m = _NAME.search(data, r.pos)
        if m is None:
            break
        gap = m.start() - r.pos
        if gap > _MAX_GAP and layers:  # before the input layer: every wrapper's version number
            r.pos = m.start()
            raise r.fail(f"{gap} unexplained bytes before a layer")
        r.pos = m.start()
        version = r.string()
        kind = _KINDS[version]
        try:
            layer = _READERS[kind](r, version) if kind in _READERS else Layer(kind, version)
            if kind == "relu" and version == "relu_2":
                r.bool()
        except (IndexError, ValueError) as exc:
            raise r.fail(f"damaged {version} layer: {exc}") from exc
        if kind == "loss":
            loss = layer  # written first: the loss layer wraps the whole network
        else:
            layers.append(layer)
    if len(data) - r.pos > _MAX_GAP:
        raise r.fail(f"{len(data) - r.pos} unexplained bytes at the end")
    if loss is None or not layers or layers[0].kind != "input":
        raise r.fail("no input or loss layer")
    return layers + [loss]
