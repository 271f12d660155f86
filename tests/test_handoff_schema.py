"""The published handoff JSON schema and the pydantic model that writes packages agree.

The schema (``handoff/schema/handoff-1.json``) is what receivers validate against; the model is
what the IVR builds. Walked side by side: every object in the model is an object in the schema
with exactly the same properties (no more, no fewer), closed to others, and every field the
model always writes is required by the schema.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from handoff.package import HandoffPackage, schema

STORE_ONLY = {"deliveries"}  # added by the store when a package is read back, not by the model


def _objects(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas a property may be (through oneOf/anyOf and array items)."""
    found = []
    for option in node.get("oneOf", []) + node.get("anyOf", []):
        found += _objects(option)
    if node.get("type") == "object" or "properties" in node:
        found.append(node)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        found += _objects(node["items"])
    return found


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (Optional[...], list[...], unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            out += _models(arg)
    return out


def _walk(model: type[BaseModel], node: dict[str, Any], path: str, seen: list[str]) -> None:
    properties = set(node.get("properties", {})) - (STORE_ONLY if path == "" else set())
    fields = set(model.model_fields)
    assert properties == fields, (f"{path or 'package'}: schema has {sorted(properties - fields)}"
                                  f" the model lacks, model has {sorted(fields - properties)}")
    assert node.get("additionalProperties") is False, f"{path or 'package'} is not closed"
    required = set(node.get("required", []))
    for name, field in model.model_fields.items():
        if field.is_required():
            assert name in required, f"{path}.{name} is always written but not required"
        for inner in _models(field.annotation):
            objects = _objects(node["properties"][name])
            assert objects, f"{path}.{name} is an object in the model, not in the schema"
            _walk(inner, objects[-1], f"{path}.{name}", seen)
    seen.append(path or "package")


def test_the_schema_and_the_model_describe_the_same_package():
    seen: list[str] = []
    _walk(HandoffPackage, schema(), "", seen)
    # Every nested part was compared, not only the top level.
    assert {"package", ".call", ".customer", ".customer.recent_charges", ".transfer",
            ".transfer.attempts", ".transcript", ".escalation"} <= set(seen)
