"""How a classification (or text) node's result is exposed to templates and to the backend."""

from __future__ import annotations

from camera_pod.mpta.schema import Node, OcrNode

# The original worker's rule, in its order: the first match wins.
_FIELD_BY_MODEL_ID = (("brand", "brand"), ("body", "body_type"), ("color", "color"), ("colour", "color"))


# What a text node offers beside its resultField: ``{plate_ocr.text}``, ``{plate_ocr.confidence}``.
TEXT_FIELDS = frozenset({"text", "confidence"})


def result_field(node: Node | OcrNode) -> str | None:
    """``brand`` / ``body_type`` / ``color`` from the modelId, or the explicit ``resultField``."""
    if node.resultField:
        return node.resultField
    model_id = node.modelId.lower()
    for needle, field in _FIELD_BY_MODEL_ID:
        if needle in model_id:
            return field
    return None


def branch_fields(node: Node | OcrNode) -> frozenset[str]:
    """Fields a template may read from this node's result: ``{modelId.<field>}``."""
    if isinstance(node, OcrNode):
        return TEXT_FIELDS | {node.resultField}
    field = result_field(node)
    return frozenset({"class", "confidence"} | ({field} if field else set()))
