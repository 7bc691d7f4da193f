"""The warp's pixel maths as an ONNX model built in code (GridSample + interior composite)."""

from __future__ import annotations

from typing import Any


def build_warp_graph() -> bytes:
    """GridSample + cavity composite, as an ONNX model built in code (no weights)."""
    from onnx import TensorProto, helper

    def tensor(name: str, shape: list[str | int]) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes = [
        helper.make_node(
            "GridSample",
            ["image", "grid"],
            ["warped"],
            mode="linear",
            padding_mode="border",
            align_corners=1,
        ),
        helper.make_node("Sub", ["cavity", "warped"], ["delta"]),
        helper.make_node("Mul", ["delta", "alpha"], ["blend"]),
        helper.make_node("Add", ["warped", "blend"], ["mixed"]),
        helper.make_node("Add", ["mixed", "half"], ["shifted"]),
        helper.make_node("Clip", ["shifted", "zero", "top"], ["out"]),
    ]
    consts = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("top", TensorProto.FLOAT, [], [255.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "atlas_warp",
        [
            tensor("image", [1, 3, "H", "W"]),
            tensor("grid", [1, "h", "w", 2]),
            tensor("cavity", [1, 3, "h", "w"]),
            tensor("alpha", [1, 1, "h", "w"]),
        ],
        [tensor("out", [1, 3, "h", "w"])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    return bytes(model.SerializeToString())
