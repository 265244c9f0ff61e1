"""Validation of a document straight to its wire JSON, without model instances: the intake's fast path.

A document model declares every field its ERP knows (a SoftOne invoice 46, each of its rows 36), and pydantic
builds an instance holding all of them, the absent ones as None, then walks all of them again to leave the Nones
out of the JSON. A POS row carries eight. `WireValidator` derives from a model's own fields a TypedDict schema that
holds only the keys a document has, validated by the same field types (their constraints and type-level
validators included; integers and integer enums by stricter equivalents without a Python call, `_in_rust`) and the
model's field validators; the model's whole-document rules, which read attributes, are given to it as one
function over the dict (`check`). It validates a ten-row invoice and encodes it in about
40 % of the model's time (docs/benchmarks.md).

It is a fast path, not a second authority: `validate_document_json` tries it first and asks the model about any
document it refuses, so the errors reported are always the model's. It therefore must never accept a document
the model refuses, and what it accepts must encode exactly as the model encodes it. Making a `WireValidator` of a
model whose shape it cannot mirror (non-None defaults, extra fields allowed, model validators that `check` does
not cover) fails at import, and tests/unit/test_wire.py compares the two on the spec examples and on generated
documents.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from enum import IntEnum
from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    Strict,
    TypeAdapter,
    WrapValidator,
)
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from schemas.types import INT_CHECK

#: `TypedDict` called to make a type at run time, from a name and keys known then (mypy reads a call of
#: `TypedDict` itself as a declaration, which needs literals).
_MAKE_TYPED_DICT: Any = TypedDict

_VALIDATOR_OF_MODE = {
    "before": BeforeValidator, "after": AfterValidator, "plain": PlainValidator, "wrap": WrapValidator
}  # fmt: skip


class WireDocument(str):
    """A validated document as its wire JSON text: what the intake buffers and the send path POSTs."""

    __slots__ = ()

    def to_wire_json(self) -> str:
        return str(self)


class WireValidator:
    """JSON text of one document → `WireDocument`, or pydantic's ValidationError (the model then says why)."""

    def __init__(self, model: type[BaseModel], check: Callable[[dict[str, Any]], Any], covers: set[str]) -> None:
        """`check(document)` raises ValueError for what the model validators named in `covers` (of the model
        and the models within it) refuse; every model validator must be named there."""
        declared = _model_validators(model)
        if declared != covers:
            raise TypeError(f"{model.__name__}: model validators {sorted(declared)}, covered {sorted(covers)}")
        checked: Any = Annotated[_typed_dict(model, {}), AfterValidator(check)]  # a type made at run time
        self._adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(checked)

    def validate_json(self, text: str | bytes) -> WireDocument:
        document = self._adapter.validate_json(text)
        return WireDocument(self._adapter.dump_json(document, exclude_none=True).decode())


def _model_validators(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.__pydantic_decorators__.model_validators)
    for field in model.model_fields.values():
        for inner in _models_in(field.annotation):
            names |= _model_validators(inner, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _typed_dict(model: type[BaseModel], made: dict[type[BaseModel], Any]) -> Any:
    """The TypedDict of `model`'s wire shape: keyed by alias, required as the model requires."""
    if model in made:
        return made[model]
    extra = model.model_config.get("extra")
    if extra != "forbid":
        raise TypeError(f"{model.__name__}: only models that forbid extra fields have a wire validator")
    by_field: dict[str, list[Any]] = {}
    for decorator in model.__pydantic_decorators__.field_validators.values():
        bound = getattr(model, decorator.cls_var_name)
        for name in decorator.info.fields:
            by_field.setdefault(name, []).append(_VALIDATOR_OF_MODE[decorator.info.mode](bound))
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if not field.is_required() and (field.default is not None or field.default_factory is not None):
            # The model's dump would hold the default for an absent key; the TypedDict's would not.
            raise TypeError(f"{model.__name__}.{name}: a default other than None has no wire validator")
        annotation = _swap_models(field.rebuild_annotation(), made)
        if name in by_field:
            annotation = Annotated[(annotation, *by_field[name])]
        keys[field.alias or name] = Required[annotation] if field.is_required() else NotRequired[annotation]
    shape: Any = _MAKE_TYPED_DICT(f"{model.__name__}Wire", keys)
    shape.__pydantic_config__ = ConfigDict(extra="forbid")
    made[model] = shape
    return shape


def _swap_models(annotation: Any, made: dict[type[BaseModel], Any]) -> Any:
    """`annotation` with each model in it replaced by its TypedDict (list[Row] -> list[RowWire], ...), and each
    type that `_in_rust` knows replaced by its equivalent that pydantic-core checks without calling Python."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _typed_dict(annotation, made)
    if (fast := _in_rust(annotation)) is not None:
        return fast
    args = typing.get_args(annotation)
    if not args:
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return Annotated[(_swap_models(args[0], made), *annotation.__metadata__)]
    swapped = tuple(_swap_models(a, made) for a in args)
    if swapped == args:
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[swapped]  # noqa: UP007 (built from a tuple)
    return origin[swapped if len(swapped) > 1 else swapped[0]]


def _in_rust(annotation: Any) -> Any:
    """A type of the wire shape that pydantic-core checks without a Python call, where the model's needs one per
    value; None for any other type. Each accepts a subset of what the model's type accepts and holds it as the
    model dumps it, so what the wire validator refuses of it, the model decides (and may accept):

    - an integer enum (RowType) -> `Literal` of its values: the same integers, held as int (the model's member
      dumps as its value); "2" goes to the model;
    - `Int` (a Python check refusing booleans) -> a strict int, which refuses booleans in pydantic-core; the
      laxer forms `Int` also takes ("6", 6.0) go to the model. Other constraints on it (`ge=0`) stay.

    On a ten-row invoice these are 21 Python calls and 10 enum members (each read again by the encoder) less.
    """
    if isinstance(annotation, type) and issubclass(annotation, IntEnum):
        return Literal[tuple(member.value for member in annotation)]
    if typing.get_origin(annotation) is Annotated and typing.get_args(annotation)[0] is int:
        metadata = annotation.__metadata__
        if INT_CHECK in metadata:
            return Annotated[(int, Strict(), *(m for m in metadata if m is not INT_CHECK))]
    return None
