"""Configuration validation with one error shape everywhere.

Every invalid value is reported as one line that names the key, what is allowed and what was
given — ``workflows[2].budget must be an integer in [1, 100]; got 500`` — the way scikit-learn
reports bad parameters. Values are validated once, at the boundary (when a config is built from
a preset, a file, ``--set`` overrides or Python), never with ``assert`` deeper in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Iterator

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError


class ConfigError(ValueError):
    """An experiment configuration that cannot run; the message names the offending key or file."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _interval(lo, hi, lo_open=False, hi_open=False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '≥'} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '≤'} {hi}"
    return "finite"


def Integer(lo: int | None = None, hi: int | None = None):
    """An ``int`` in ``[lo, hi]``; booleans and non-integral numbers are refused."""
    allowed = f"an integer {_interval(lo, hi)}"

    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
            raise ValueError(f"must be {allowed}")
        value = int(value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"must be {allowed}")
        return value

    return Annotated[int, BeforeValidator(check)]


def Real(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """A finite ``float`` in the given interval."""
    allowed = f"a number {_interval(lo, hi, lo_open, hi_open)}"

    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"must be {allowed}")
        value = float(value)
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise ValueError(f"must be {allowed}")
        if hi is not None and (value > hi or (hi_open and value == hi)):
            raise ValueError(f"must be {allowed}")
        return value

    return Annotated[float, BeforeValidator(check)]


def jsonl_objects(lines: list[str], where: str) -> Iterator[tuple[int, dict]]:
    """The JSON objects of a user's JSONL file, with their 1-based line numbers; blank lines skipped.

    A line that is not JSON, or not an object, is one ``ConfigError`` naming ``where`` (the file,
    and the config key that gave it) and the line.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where} line {number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{where} line {number} is not a JSON object; got {type(record).__name__}")
        yield number, record


def user_path(value: str, context: dict | None) -> str:
    """A user's file path as an absolute one: relative paths are read from the directory of the
    config file that named them (``context["base_dir"]``, set when a TOML is loaded), else the cwd."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path((context or {}).get("base_dir") or Path.cwd()) / path
    return str(path.resolve())


def key_of(loc: tuple, prefix: str = "") -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str] | None:
    """Field names of the model at ``loc`` (``None`` when the path leaves plain models)."""
    for part in loc:
        if model is None or isinstance(part, int) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return sorted(model.model_fields) if model is not None else None


def messages(error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None, tags: frozenset = frozenset()) -> list[str]:
    """One line per error in the shape ``key must be …; got …``.

    ``tags`` are the discriminator values of tagged unions (workflow names), which pydantic puts
    in an error's location but which are not keys the user wrote.
    """
    lines = []
    for err in error.errors(include_url=False):
        loc = tuple(
            p for p in err["loc"]
            if not (isinstance(p, str) and (p.startswith("function-") or p in {"str", "int", "float"} or p in tags))
        )
        kind, ctx, given = err["type"], err.get("ctx", {}), err.get("input")
        if kind == "union_tag_invalid":
            key = key_of(loc + (ctx["discriminator"].strip("'"),), prefix)
            lines.append(f"{key} must be one of {ctx['expected_tags']}; got {ctx['tag']!r}")
            continue
        key = key_of(loc, prefix)
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = f"; known keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{key} is not a known key{hint}")
        elif kind == "missing":
            lines.append(f"{key} is required")
        elif kind == "literal_error":
            lines.append(f"{key} must be one of {ctx['expected']}; got {given!r}")
        elif kind == "value_error" and isinstance(ctx.get("error"), ConfigError):
            lines.append(str(ctx["error"]))  # already names its key
        elif kind == "value_error" and not loc:
            # A check across fields: its text starts with the key it blames.
            text = str(ctx.get("error", err["msg"]))
            lines.append(f"{prefix}.{text}" if prefix else text)
        elif kind == "value_error":
            text = str(ctx.get("error", err["msg"]))
            lines.append(f"{key} {text}" + ("" if "; got" in text else f"; got {given!r}"))
        elif kind == "string_pattern_mismatch":
            lines.append(f"{key} must match the pattern {ctx['pattern']}; got {given!r}")
        else:
            msg = err["msg"]
            lines.append(f"{key}: {msg[:1].lower() + msg[1:]}; got {given!r}")
    return lines


def validate(model: type[BaseModel], data: Any, prefix: str = "", context: dict | None = None, tags: frozenset = frozenset()) -> BaseModel:
    """``model.model_validate(data)``, raising :class:`ConfigError` with one line per problem."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        raise ConfigError("\n".join(messages(error, prefix, model, tags))) from None
