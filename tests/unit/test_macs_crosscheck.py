"""The MAC counter (:func:`workbench.models.macs.count_macs`) against TensorFlow's own profiler.

TensorFlow's profiler (``tf.compat.v1.profiler``, float operations) counts, from the frozen
inference graph of one image, 2 floating-point operations per multiply-accumulate of every
convolution (``Conv2D``, ``DepthwiseConv2dNative``) and matrix product (``MatMul``). The
workbench counts MACs from the Keras layers' shapes instead; the two are independent
derivations and must agree exactly on those ops: profiler float operations = 2 x MACs.
(The profiler also counts bias adds, pooling and softmax, which the MAC count leaves out by
design; they are not compared.)
"""

from __future__ import annotations

import collections

import pytest
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tf_keras import layers

from workbench.models import architectures, macs

MAC_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")  # 2 float operations per MAC


def profiler_float_ops(model) -> collections.Counter:
    """Float operations per op type in ``model``'s frozen inference graph, batch of one,
    as TensorFlow's profiler counts them."""
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(function).graph.as_graph_def()
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(frozen, name="")
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph, cmd="graph", options=options)
    by_type: collections.Counter = collections.Counter()
    stack = list(profile.children)
    while stack:
        node = stack.pop()
        by_type[graph.get_operation_by_name(node.name).type] += node.float_ops
        stack.extend(node.children)
    return by_type


def _mixed():
    """Depthwise (strided) and separable convolutions, and a Dense on a rank-3 tensor.

    No grouped convolution: tf-keras compiles one with XLA into a nested function, which the
    profiler does not look into (tests/unit/test_macs_peak.py checks grouped ones by hand).
    """
    inputs = keras.Input((16, 16, 8))
    x = layers.Conv2D(16, 3, padding="same")(inputs)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(x)
    x = layers.SeparableConv2D(24, 3, padding="valid")(x)
    x = layers.Reshape((36, 24))(x)
    x = layers.Dense(5)(x)  # 36 positions
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


MODELS = {
    "seed_cnn": architectures.seed_cnn,
    "improved_cnn": architectures.improved_cnn,
    "student_cnn": architectures.student_cnn,
    "resnet": architectures.resnet,
    "mobilenet_v2_32x32": lambda: keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    ),
    "depthwise_separable_dense": _mixed,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mac_count_is_half_the_profilers_float_ops(name):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    by_type = profiler_float_ops(model)
    counted = macs.count_macs(model)
    assert counted > 0
    assert sum(by_type[op] for op in MAC_OPS) == 2 * counted, (
        f"{name}: count_macs {counted:,} MACs, TensorFlow's profiler "
        f"{dict((op, by_type[op]) for op in MAC_OPS)} float ops (expected 2 per MAC)"
    )
