"""YAML files validated as pydantic models, and errors that name the file and the key.

Every asset file (llmops.yaml, prompts, chains, routes, recipes, gates) is read
through `read_yaml_model`; a problem reads `path: dotted.key: what is wrong`, and
an unknown key lists the keys allowed at its place.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from llmops.errors import LlmopsError, SpecError

M = TypeVar("M", bound=BaseModel)


def read_yaml_model(
    path: Path, model: type[M], error: type[LlmopsError] = SpecError, *, allow_empty: bool = False
) -> M:
    """A YAML file validated as `model`; every error names the file and the key."""
    try:
        data = yaml.safe_load(path.read_text())
        if data is None and allow_empty:
            data = {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{path}: {describe_validation_error(exc, model)}") from None


def describe_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: the dotted key, what is wrong, what is allowed.

    With `model` (the class that was validated), an unknown key also lists the
    keys allowed at its place.
    """
    return "; ".join(f"{dotted_key(loc)}: {msg}" for loc, msg in problems(exc, model))


def problems(
    exc: ValidationError, model: type[BaseModel] | None
) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) per error of `exc`; the location is printable with `dotted_key`."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")  # a validator's own message
        if loc and loc[-1] == "[key]":  # a dict key (e.g. a profile name) is not allowed
            loc, msg = loc[:-1], f"key not allowed: {msg}"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1]) if model else None
            msg = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        out.append((loc, msg))
    return out


def dotted_key(loc: tuple[Any, ...]) -> str:
    """`messages[1].role` for ("messages", 1, "role")."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return text or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model found at `loc` inside `model`, if a model is there."""

    def unwrap(tp: Any) -> Any:
        if get_origin(tp) in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            return args[0] if len(args) == 1 else tp
        return tp

    tp: Any = model
    for part in loc:
        tp = unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) in (list, tuple, set) and get_args(tp):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict and get_args(tp):
            tp = get_args(tp)[1]
        else:
            return None
    tp = unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its class name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__
