"""The shipped chip age network in a form Keras loads (for a GPU, under JAX or TensorFlow), made from its
own .tflite, and checked against it.

    python -m training.keras_from_tflite --model models/age-dlib-resnet --chips .ft/utk-test.npz

The .tflite is the shipped network: its weights exist nowhere else. This reads its graph (the
flatbuffer, through TensorFlow's schema) and builds the same graph from standard Keras layers with the
same weights: no custom layer, so Keras on any backend loads it. It then runs both on real chips and
writes the .keras beside the .tflite, and its checksum and the comparison into the card, only if
every distribution agrees to 1e-4 and the card's figures (MAE, group accuracy) agree to 1e-4.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from phototag.runtime import file_sha256, import_keras

__all__ = ["keras_from_tflite", "compare"]

TOLERANCE = 1e-4
_RELU = 1  # tflite ActivationFunctionType
_SAME, _VALID = 0, 1  # tflite Padding


def _graph(path: Path) -> tuple[Any, Any, dict[int, str]]:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return model, model.subgraphs[0], names


def _const(model: Any, graph: Any, i: int) -> np.ndarray:
    t = graph.tensors[i]
    data = model.buffers[t.buffer].data
    if data is None:
        raise ValueError(f"tensor {i} ({t.name}) is not a constant")
    dtype = {0: np.float32, 2: np.int32, 4: np.int64, 3: np.uint8}[t.type]
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(tuple(t.shape))


def _activation(keras: Any, x: Any, fused: int, name: str) -> Any:
    if fused == 0:
        return x
    if fused == _RELU:
        return keras.layers.ReLU(name=name)(x)
    raise ValueError(f"fused activation {fused} is not supported")


def keras_from_tflite(path: Path) -> Any:
    """A Keras model computing what the .tflite at `path` computes, with its weights."""
    keras = import_keras()
    model, graph, names = _graph(path)
    (inp,) = graph.inputs
    t = graph.tensors[inp]
    x = keras.Input(shape=tuple(int(d) for d in t.shape[1:]), dtype="uint8", name="chip")
    values: dict[int, Any] = {int(inp): x}
    pending_scale: dict[int, tuple[Any, float]] = {}
    for n, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        opt = op.builtinOptions
        ins, (out,) = [int(i) for i in op.inputs], [int(o) for o in op.outputs]
        name = f"{kind.lower()}_{n}"
        if kind == "CAST":
            values[out] = values[ins[0]]  # Rescaling below casts to float32
        elif kind == "MUL" and ins[1] not in values and _const(model, graph, ins[1]).size == 1:
            pending_scale[out] = (values[ins[0]], float(_const(model, graph, ins[1]).reshape(())))
        elif kind == "ADD" and ins[0] in pending_scale and ins[1] not in values:
            src, scale = pending_scale.pop(ins[0])  # x * scale + offset: the input's normalisation
            offset = _const(model, graph, ins[1]).astype(np.float64)
            values[out] = keras.layers.Rescaling(scale, offset.tolist(), name="normalise")(src)
        elif kind == "CONV_2D":
            w = _const(model, graph, ins[1]).transpose(1, 2, 3, 0)  # OHWI -> HWIO
            b = _const(model, graph, ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            if (opt.dilationHFactor, opt.dilationWFactor) != (1, 1):
                raise ValueError("dilated convolutions are not supported")
            layer = keras.layers.Conv2D(w.shape[3], w.shape[:2], strides=(opt.strideH, opt.strideW),
                                        padding="same" if opt.padding == _SAME else "valid",
                                        use_bias=b is not None, name=name)
            y = layer(values[ins[0]])
            layer.set_weights([w] + ([b] if b is not None else []))
            values[out] = _activation(keras, y, opt.fusedActivationFunction, name + "_relu")
        elif kind == "ADD":
            y = keras.layers.Add(name=name)([values[ins[0]], values[ins[1]]])
            values[out] = _activation(keras, y, opt.fusedActivationFunction, name + "_relu")
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            cls = keras.layers.MaxPooling2D if kind == "MAX_POOL_2D" else keras.layers.AveragePooling2D
            y = cls((opt.filterHeight, opt.filterWidth), strides=(opt.strideH, opt.strideW),
                    padding="same" if opt.padding == _SAME else "valid", name=name)(values[ins[0]])
            values[out] = _activation(keras, y, opt.fusedActivationFunction, name + "_relu")
        elif kind == "PAD":
            pads = _const(model, graph, ins[1]).astype(int)
            if pads[0].any() or pads[3, 0]:
                raise ValueError(f"PAD {pads.tolist()}: only spatial padding and channels added at the end")
            y = values[ins[0]]
            if pads[1:3].any():
                y = keras.layers.ZeroPadding2D((tuple(pads[1]), tuple(pads[2])), name=name)(y)
            if pads[3, 1]:  # zero channels appended (a residual block that widens): a 1x1 conv by [I | 0], exact
                c = int(graph.tensors[ins[0]].shape[3])
                layer = keras.layers.Conv2D(c + int(pads[3, 1]), 1, use_bias=False, trainable=False, name=name + "_c")
                y2 = layer(y)
                layer.set_weights([np.eye(c, c + int(pads[3, 1]), dtype=np.float32)[None, None]])
                y = y2
            values[out] = y
        elif kind == "MEAN":
            axes = sorted(_const(model, graph, ins[1]).tolist())
            if axes != [1, 2] or opt.keepDims:
                raise ValueError(f"MEAN over {axes} is not supported")
            values[out] = keras.layers.GlobalAveragePooling2D(name=name)(values[ins[0]])
        elif kind == "FULLY_CONNECTED":
            w = _const(model, graph, ins[1]).T
            b = _const(model, graph, ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            layer = keras.layers.Dense(w.shape[1], use_bias=b is not None, name=name)
            y = layer(values[ins[0]])
            layer.set_weights([w] + ([b] if b is not None else []))
            values[out] = _activation(keras, y, opt.fusedActivationFunction, name + "_relu")
        elif kind == "GELU":
            if opt.approximate:
                raise ValueError("approximate GELU is not supported")
            values[out] = keras.layers.Activation("gelu", name=name)(values[ins[0]])
        elif kind == "SOFTMAX":
            if opt.beta != 1.0:
                raise ValueError("softmax with beta other than 1 is not supported")
            values[out] = keras.layers.Softmax(name=name)(values[ins[0]])
        elif kind == "LOGISTIC":
            values[out] = keras.layers.Activation("sigmoid", name=name)(values[ins[0]])
        else:
            raise ValueError(f"{path}: operator {kind} is not supported")
    outputs = {}
    for o in graph.outputs:
        width = int(graph.tensors[o].shape[-1])
        outputs["age" if width == 101 else "gender"] = values[int(o)]
    return keras.Model(x, outputs, name=path.stem.replace("-", "_"))


def compare(card_path: Path, chips: np.ndarray, ages: np.ndarray | None) -> dict[str, Any]:
    """The shipped model read by LiteRT and by Keras on the same chips: the largest difference between
    their distributions, and the card's figures from each."""
    from phototag.ages.model import load_model

    from training.evaluate import metrics_for

    out: dict[str, Any] = {"faces": int(len(chips))}
    preds = {}
    for runtime in ("litert", "keras"):
        model = load_model(card_path, runtime=runtime)
        preds[runtime] = model.predict_chips(chips)
        out[f"{runtime}_runtime"] = model.runtime
        if ages is not None:
            from types import SimpleNamespace

            m = metrics_for(SimpleNamespace(ages=ages, genders=np.full(len(ages), -1), thumbs=chips),
                            preds[runtime].distribution, preds[runtime].female, model.point)
            out[f"{runtime}_mae"] = m["mae"]
    out["max_distribution_difference"] = float(np.abs(preds["litert"].distribution - preds["keras"].distribution).max())
    if preds["litert"].female is not None:
        out["max_female_difference"] = float(np.abs(preds["litert"].female - preds["keras"].female).max())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/age-dlib-resnet"))
    ap.add_argument("--chips", type=Path, required=True, help="a chips .npz (training/chips.py) to compare on")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    base = args.model.with_suffix("")
    card_path, tflite, target = base.with_suffix(".json"), base.with_suffix(".tflite"), base.with_suffix(".keras")
    net = keras_from_tflite(tflite)
    tmp = target.with_name(target.stem + ".tmp.keras")
    net.save(tmp)
    card = json.loads(card_path.read_text())
    from training.chips import load_chips

    z = load_chips(args.chips)
    chips, ages = z["chips"], z["ages"]
    if args.limit:
        chips, ages = chips[: args.limit], ages[: args.limit]
    tmp.replace(target)
    card["keras"], card["keras_sha256"] = target.name, file_sha256(target)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    check = compare(card_path, chips, ages if (ages >= 0).all() else None)
    check["chips"] = args.chips.name
    check["measured"] = f"{datetime.date.today()} on {platform.processor() or platform.machine()} CPUs, " \
                        f"Keras {import_keras().__version__} on {import_keras().backend.backend()}"
    check["made_by"] = "training/keras_from_tflite.py"
    ok = check["max_distribution_difference"] <= TOLERANCE and abs(check.get("keras_mae", 0) - check.get("litert_mae", 0)) <= TOLERANCE
    print(json.dumps(check, indent=1))
    if not ok:
        del card["keras"], card["keras_sha256"]
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        target.unlink()
        print(f"the Keras copy differs from the .tflite by more than {TOLERANCE}: not kept", file=sys.stderr)
        return 1
    card["keras_check"] = check
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
