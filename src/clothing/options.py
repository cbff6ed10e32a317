"""Options declared once: a dataclass field carries its default, help and limits.

A command generates its flags from the fields (``add_flags``), fills the dataclass
from a file of settings and the flags given (``settings_from``), and checks every
limit in one place (``limit_problems``). A flag is named after its field
(``batch_size`` -> ``--batch-size``); its type comes from the field's annotation
(``bool`` is a switch, ``tuple[str, ...]`` a comma-separated list). Flags that are
not given stay unset, so a file of settings can stand between the defaults and
the command line.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, field, fields
from pathlib import Path
from typing import Any


def option(
    default: Any = MISSING,
    *,
    help: str,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    minimum: float | None = None,
    below: float | None = None,
) -> Any:
    """A dataclass field that is also a flag, with ``help`` and its limits."""
    limits = {"choices": choices, "metavar": metavar, "minimum": minimum, "below": below}
    return field(default=default, metadata={"help": help, **limits})


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _declared(cls: type) -> Iterator[tuple[Field[Any], type]]:
    """Each field declared with :func:`option`, with its type (``X | None`` read as ``X``)."""
    hints = typing.get_type_hints(cls)
    for item in fields(cls):
        if "help" in item.metadata:
            yield item, _without_none(hints[item.name])


def _without_none(kind: Any) -> Any:
    if isinstance(kind, types.UnionType):
        (kind,) = (part for part in typing.get_args(kind) if part is not type(None))
    return kind


def _comma_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """A flag for each field of ``cls`` declared with :func:`option`, unset unless given."""
    for item, kind in _declared(cls):
        name, meta = flag_name(item.name), item.metadata
        if kind is bool:
            parser.add_argument(
                name, action="store_true", default=argparse.SUPPRESS, help=meta["help"]
            )
            continue
        parser.add_argument(
            name,
            type=_comma_list if kind == tuple[str, ...] else kind,
            choices=meta["choices"],
            metavar=meta["metavar"],
            default=argparse.SUPPRESS,
            help=meta["help"],
        )


class SettingsError(ValueError):
    """A file of settings names a setting that does not exist or gives it a wrong type."""


def settings_from(
    cls: type, args: argparse.Namespace, file_values: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """The declared fields' values: ``file_values`` (from ``source``), then the flags given."""
    kinds = {item.name: kind for item, kind in _declared(cls)}
    unknown = sorted(set(file_values) - set(kinds))
    if unknown:
        raise SettingsError(f"{source} names settings that do not exist: {', '.join(unknown)}")
    values = {
        name: _convert(value, kinds[name], name, source) for name, value in file_values.items()
    }
    given = {name: getattr(args, name) for name in kinds if hasattr(args, name)}
    return values | given


def _convert(value: Any, kind: Any, name: str, source: str) -> Any:
    """A value read from a file, as the field's type (an int is a valid float)."""
    if kind == tuple[str, ...] and isinstance(value, list):
        return tuple(str(part) for part in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise SettingsError(
        f"{source}: {name} must be {getattr(kind, '__name__', kind)}, got {value!r}"
    )


def limit_problems(settings: object) -> str | None:
    """The first value outside its declared limits (``minimum``, ``below``), as a message."""
    for item, _ in _declared(type(settings)):
        value, meta = getattr(settings, item.name), item.metadata
        minimum, below = meta["minimum"], meta["below"]
        if value is None or minimum is None:
            continue
        if below is not None and not minimum <= value < below:
            return f"{flag_name(item.name)} must be at least {minimum:g} and below {below:g}"
        if value < minimum:
            wanted = "0 or more" if minimum == 0 else f"at least {minimum:g}"
            return f"{flag_name(item.name)} must be {wanted}"
    return None
