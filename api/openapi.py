"""Request bodies in the API document: a model's JSON Schema with its ``$defs`` written in place.

A pydantic schema refers to its parts as ``#/$defs/Name``; pasted into the OpenAPI document as a request body
those references would point at the document's root, where there is no ``$defs``, so clients and fuzzers could
not resolve them. The models of the bodies are not recursive, so every reference is replaced by its definition.
"""

from __future__ import annotations

from typing import Any

_PREFIX = "#/$defs/"


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without ``$defs``, ``$id`` or ``$schema``: each ``#/$defs/X`` reference replaced by X itself."""
    definitions: dict[str, Any] = schema.get("$defs", {})

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:  # noqa: ANN401 - any JSON value
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_PREFIX):
            name = ref.removeprefix(_PREFIX)
            if name in seen:
                raise ValueError(f"recursive schema: {' -> '.join((*seen, name))}")
            rest = {k: resolve(v, seen) for k, v in node.items() if k != "$ref"}
            return {**resolve(definitions[name], (*seen, name)), **rest}
        return {k: resolve(v, seen) for k, v in node.items() if k not in ("$defs", "$id", "$schema")}

    result: dict[str, Any] = resolve(schema, ())
    return result


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose required JSON body follows `schema` (read by the route itself)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline_defs(schema)}}}}
