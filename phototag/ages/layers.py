"""Custom Keras layers that shipped models may contain; imported before a model is loaded."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="phototag")
class CoralToDistribution(keras.layers.Layer):
    """CORAL's rank-consistent P(age > k), k = 0..99, turned into a distribution over ages 0..100."""

    def call(self, logits):  # noqa: D102
        s = ops.sigmoid(logits)  # n x 100, P(age > k)
        ones = ops.ones_like(s[:, :1])
        zeros = ops.zeros_like(s[:, :1])
        above = ops.concatenate([ones, s], axis=1)  # P(age > k-1) = P(age >= k)
        below = ops.concatenate([s, zeros], axis=1)  # P(age > k)
        p = ops.maximum(above - below, 0.0) + 1e-7
        return p / ops.sum(p, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="phototag")
class CoralBias(keras.layers.Layer):
    """One shared weight vector, 100 ordered thresholds: the CORAL output layer (Cao et al. 2020)."""

    def __init__(self, num_thresholds: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.num_thresholds = num_thresholds

    def build(self, input_shape):  # noqa: D102
        self.w = self.add_weight(shape=(input_shape[-1], 1), initializer="glorot_uniform", name="w")
        self.b = self.add_weight(
            shape=(self.num_thresholds,),
            initializer=keras.initializers.Constant(
                [float(x) for x in (2.0 - 4.0 * (i + 0.5) / self.num_thresholds for i in range(self.num_thresholds))]
            ),
            name="b",
        )

    def call(self, x):  # noqa: D102
        return ops.matmul(x, self.w) + self.b

    def get_config(self):  # noqa: D102
        return {**super().get_config(), "num_thresholds": self.num_thresholds}
