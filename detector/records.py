"""Plain dataclass records that serialise to JSON as pydantic models do, without loading pydantic.

The report records are built and written on every scan; pydantic (and what it imports) costs
more to load than a small scan takes.  A ``Record`` checks and converts its fields when it is
made, with the conversions the report's pydantic models made (lax numbers, smart unions), and
writes the same JSON bytes (``model_dump_json``).  Each field's JSON Schema facts sit beside it
(``schema``); ``model_json_schema`` builds the pydantic model from them only when asked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, ClassVar, Literal, Self, Union

Converter = Callable[[Any], Any]


def schema(**facts: Any) -> dict[str, Any]:
    """A field's metadata: its JSON Schema facts (pydantic Field arguments: description,
    bounds, alias, extra schema)."""
    return {"schema": facts}


class Record:
    """Base of the report's records: made by keyword, checked and converted on creation."""

    # Model configuration for the JSON Schema (pydantic ConfigDict keys).
    schema_config: ClassVar[dict[str, Any]] = {"extra": "forbid"}
    # Conversions applied before the field's type (a field → a function of its value).
    before: ClassVar[dict[str, Converter]] = {}
    _fields: ClassVar[list[tuple[str, str, Converter, dict[str, Any]]]]

    def __post_init__(self) -> None:
        cls = type(self)
        if "_fields" not in cls.__dict__:
            cls._fields = _plan(cls)
        for name, _, convert, bounds in cls._fields:
            value = getattr(self, name)
            if name in cls.before:
                value = cls.before[name](value)
            value = convert(value)
            if bounds and not bounds.get("ge", -math.inf) <= value <= bounds.get("le", math.inf):
                raise ValueError(f"{cls.__name__}.{name}: {value!r} is out of bounds {bounds}")
            setattr(self, name, value)

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> Self:
        """The record of a mapping (JSON names or field names; nested mappings for records)."""
        if "_fields" not in cls.__dict__:
            cls._fields = _plan(cls)
        names = {key: name for name, key, _, _ in cls._fields}
        names.update((name, name) for name, _, _, _ in cls._fields)
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}")
        return cls(**{names[k]: v for k, v in data.items()})

    def model_copy(self, update: dict[str, Any] | None = None) -> Self:
        """A shallow copy, with ``update`` set as is (as pydantic's model_copy)."""
        twin = copy.copy(self)
        for k, v in (update or {}).items():
            setattr(twin, k, v)
        return twin

    def model_dump(self, mode: str = "python", by_alias: bool = True) -> dict[str, Any]:
        """Plain data: nested records as dicts, under their JSON names; ``mode="json"`` writes
        infinities and NaN as None, as the JSON output does."""
        return {
            key: _plain(getattr(self, name), mode == "json")
            for name, key, _, _ in type(self)._fields
        }

    def model_dump_json(self, indent: int | None = None, by_alias: bool = True) -> str:
        """JSON text, byte for byte what pydantic writes for the same model."""
        return _json(self, indent, 0)

    @classmethod
    def model_json_schema(cls, by_alias: bool = True) -> dict[str, Any]:
        """The JSON Schema pydantic gives the equivalent model (loads pydantic)."""
        return _pydantic_model(cls, {}).model_json_schema(by_alias=by_alias)


def _plan(cls: type) -> list[tuple[str, str, Converter, dict[str, Any]]]:
    fields = dataclasses.fields(cls)
    # Types written as text (postponed annotations) are resolved; a module that declares its
    # records with their types as objects (detector.findings) spares every report the
    # milliseconds of compiling each annotation of each record and of the base class.
    hints = (
        typing.get_type_hints(cls)
        if any(isinstance(f.type, str) for f in fields)
        else {f.name: f.type for f in fields}
    )
    plan = []
    for f in fields:
        schema = f.metadata.get("schema", {})
        bounds = {k: schema[k] for k in ("ge", "le") if k in schema}
        plan.append((f.name, schema.get("alias", f.name), _converter(hints[f.name]), bounds))
    return plan


# ---------------------------------------------------------------------- conversions


def _int(v: Any) -> int:
    """A whole number from an int, a whole float, digits or a numpy integer."""
    if isinstance(v, int | str | bytes):
        return int(v)
    if hasattr(v, "__index__"):
        return int(v.__index__())
    f = float(v)
    if not f.is_integer():
        raise ValueError(f"{v!r} is not a whole number")
    return int(f)


def _str(v: Any) -> str:
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bytes):
        return v.decode()
    raise TypeError(f"{v!r} is not text")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    raise TypeError(f"{v!r} is not a boolean")


def _scalar(v: Any, with_bool: bool) -> Any:
    """One value of a union of numbers and text (pydantic's smart union: exact types first,
    then numbers of other kinds as float)."""
    if isinstance(v, bool):
        return v if with_bool else int(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str | bytes):
        return _str(v)
    if hasattr(v, "__float__"):
        return float(v)
    raise TypeError(f"{v!r} is neither a number nor text")


def _scalar_or_list(v: Any) -> Any:
    if isinstance(v, list | tuple):
        if all(isinstance(x, str) for x in v):
            return [str(x) for x in v]
        return [_int(x) for x in v]
    return _scalar(v, True)


def _converter(tp: Any) -> Converter:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    simple: dict[Any, Converter] = {int: _int, float: float, str: _str, bool: _bool}
    if tp in simple:
        return simple[tp]
    if origin is Literal:

        def literal(v: Any) -> Any:
            if v not in args:
                raise ValueError(f"{v!r} is not one of {args}")
            return v

        return literal
    if origin in (Union, types.UnionType):
        if len(args) == 2 and type(None) in args:
            inner = _converter(next(a for a in args if a is not type(None)))
            return lambda v: None if v is None else inner(v)
        if any(typing.get_origin(a) is list for a in args):
            return _scalar_or_list
        with_bool = bool in args
        return lambda v: _scalar(v, with_bool)
    if origin is list:
        item = _converter(args[0])
        return lambda v: [item(x) for x in v]
    if origin is dict:
        value = _converter(args[1])
        return lambda v: {_str(k): value(x) for k, x in v.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return lambda v: v if isinstance(v, tp) else tp.model_validate(v)
    raise TypeError(f"no conversion for {tp!r}")


# ---------------------------------------------------------------------- JSON


def _plain(v: Any, json_mode: bool) -> Any:
    if isinstance(v, Record):
        return v.model_dump("json" if json_mode else "python")
    if isinstance(v, list):
        return [_plain(x, json_mode) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x, json_mode) for k, x in v.items()}
    if json_mode and isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def float_json(x: float) -> str:
    """A float as pydantic writes it: the shortest round-trip digits, in plain notation from
    1e-5 up to 1e16 and with an exponent ("1e-7", "1.5e+16") outside; NaN and infinities null."""
    if not math.isfinite(x):
        return "null"
    text = repr(x)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0").rstrip("0")
    if not digits:
        return sign + "0.0"
    # The value is 0.DIGITS × 10^point.
    point = len(whole) - (len(all_digits) - len(all_digits.lstrip("0"))) + int(exponent or 0)
    if 0 < point <= 16:
        if len(digits) <= point:
            return sign + digits + "0" * (point - len(digits)) + ".0"
        return sign + digits[:point] + "." + digits[point:]
    if -5 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = point - 1
    shown = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{shown}e{'+' if power >= 0 else '-'}{abs(power)}"


def _json(v: Any, indent: int | None, depth: int) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return float_json(v)
    if isinstance(v, str):
        return encode_basestring(v)
    if isinstance(v, Record):
        pairs = [(key, getattr(v, name)) for name, key, _, _ in type(v)._fields]
        return _members(pairs, indent, depth, "{}")
    if isinstance(v, dict):
        return _members(list(v.items()), indent, depth, "{}")
    if isinstance(v, list | tuple):
        return _members([(None, x) for x in v], indent, depth, "[]")
    raise TypeError(f"{v!r} cannot be written as JSON")


def _members(pairs: list[tuple[str | None, Any]], indent: int | None, depth: int, ends: str) -> str:
    colon = ": " if indent is not None else ":"
    items = [
        (encode_basestring(k) + colon if k is not None else "") + _json(x, indent, depth + 1)
        for k, x in pairs
    ]
    if not items:
        return ends
    if indent is None:
        return ends[0] + ",".join(items) + ends[1]
    inner = "\n" + " " * (indent * (depth + 1))
    return ends[0] + inner + ("," + inner).join(items) + "\n" + " " * (indent * depth) + ends[1]


# ---------------------------------------------------------------------- JSON Schema


def _pydantic_model(cls: type[Record], made: dict[type, Any]) -> Any:
    """The pydantic model equivalent to ``cls`` (for its JSON Schema)."""
    from pydantic import ConfigDict, Field, create_model

    if cls in made:
        return made[cls]
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        schema = f.metadata.get("schema", {})
        tp = _swap(hints[f.name], made)
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (tp, Field(default_factory=f.default_factory, **schema))
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = (tp, Field(f.default, **schema))
        else:
            fields[f.name] = (tp, Field(..., **schema))
    doc = cls.__doc__ if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(") else None
    made[cls] = create_model(  # type: ignore[call-overload]
        cls.__name__,
        __config__=ConfigDict(**cls.schema_config),  # type: ignore[typeddict-item]
        __doc__=doc,
        __module__=cls.__module__,
        **fields,
    )
    return made[cls]


def _swap(tp: Any, made: dict[type, Any]) -> Any:
    """``tp`` with each Record replaced by its pydantic model."""
    if isinstance(tp, type) and issubclass(tp, Record):
        return _pydantic_model(tp, made)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or origin is Literal:
        return tp
    swapped = tuple(_swap(a, made) for a in args)
    if origin is types.UnionType:
        return Union[swapped]  # noqa: UP007 (a union built from a tuple of types)
    return origin[swapped] if len(swapped) > 1 else origin[swapped[0]]
