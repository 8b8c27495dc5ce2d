"""Building pydantic models from values the code itself produced and checked.

`model_construct` still loops over every field in Python; on the hot path we
set the instance dictionary directly. Only for values that are already exactly
the field types: tests validate such models against the schema.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


def construct(cls: type[Model], values: dict[str, Any], given: set[str] | None = None) -> Model:
    obj = _new(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", given if given is not None else set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


# BaseModel defines no __new__ of its own (a test holds this); calling object's directly
# skips the lookup through the model's metaclass.
_new = object.__new__
_set = object.__setattr__
