"""A tiny real ONNX image encoder, built with the ``onnx`` package, for the tests of the ONNX path
(no package ships image-encoder weights and nothing is downloaded).

Graph: ``image [N, 3, 32, 32]`` → 4x4 average pooling → flatten (3·8·8 = 192) → ``MatMul`` with a
fixed random ``[192, 16]`` matrix → ``Relu`` → ``embedding [N, 16]``. Run as a script it writes the
model to the path given.
"""

from __future__ import annotations

import sys

import numpy as np

DIMS = 16


def build_tiny_encoder(seed: int = 7) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.standard_normal((192, DIMS)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 192], dtype=np.int64), "flat_shape")
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["projected"]),
        helper.make_node("Relu", ["projected"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_image_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", DIMS])],
        initializer=[weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ecommerce_ml-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(build_tiny_encoder())
