"""A small reader for protobuf text format, enough for TF Serving's config files.

``--model_config_file`` (``model_config_list { config { ... } }``) and
``--batching_parameters_file`` (``max_batch_size { value: 32 }``) are written
in text format. Every field maps to a list of values (fields may repeat);
a value is a scalar (``str``, ``int``, ``float``, ``bool`` or an enum name as
``str``) or a nested message (another such dict). Maps arrive as repeated
``{ key: ... value: ... }`` messages, as in protobuf itself.
"""

from __future__ import annotations

import re
from typing import Union

Value = Union[str, int, float, bool, "Message"]
Message = dict[str, list[Value]]

_TOKEN = re.compile(
    r"""
    \s+ | \#[^\n]* |                                 # blanks and comments
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<number>[-+]?(?:0x[0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?) |
    (?P<name>[A-Za-z_][A-Za-z0-9_.]*|\[[A-Za-z0-9_./]+\]) |
    (?P<punct>[{}<>:;,\[\]])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_CLOSING = {"{": "}", "<": ">"}


class TextFormatError(ValueError):
    """The text is not valid protobuf text format."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise TextFormatError(f"line {line}: unexpected {text[position : position + 10]!r}")
        if match.lastgroup is not None:
            line = text.count("\n", 0, position) + 1
            tokens.append((match.lastgroup, match.group(match.lastgroup), line))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _scalar(kind: str, token: str) -> Value:
    if kind == "string":
        return _unquote(token)
    if kind == "number":
        cleaned = token.rstrip("fF") if "x" not in token.lower() else token
        if re.fullmatch(r"[-+]?(0x[0-9a-fA-F]+|\d+)", cleaned):
            return int(cleaned, 0)
        return float(cleaned)
    if token in ("true", "True"):
        return True
    if token in ("false", "False"):
        return False
    return token  # an enum value name


def parse(text: str) -> Message:
    """Parse text format into nested dicts of lists."""
    tokens = _tokens(text)
    message, _ = _parse_message(tokens, 0, None)
    return message


def _parse_message(
    tokens: list[tuple[str, str, int]], position: int, closing: str | None
) -> tuple[Message, int]:
    message: Message = {}
    while position < len(tokens):
        kind, token, line = tokens[position]
        if closing is not None and token == closing:
            return message, position + 1
        if kind != "name":
            raise TextFormatError(f"line {line}: expected a field name, got {token!r}")
        position += 1
        if position < len(tokens) and tokens[position][1] == ":":
            position += 1
        if position >= len(tokens):
            raise TextFormatError(f"line {line}: field {token} has no value")
        value_kind, value_token, value_line = tokens[position]
        values = message.setdefault(token, [])
        if value_token in _CLOSING:
            nested, position = _parse_message(tokens, position + 1, _CLOSING[value_token])
            values.append(nested)
        elif value_token == "[":  # noqa: S105 - a token, not a password
            position = _parse_list(tokens, position + 1, values)
        elif value_kind in ("string", "number", "name"):
            values.append(_scalar(value_kind, value_token))
            position += 1
        else:
            raise TextFormatError(f"line {value_line}: unexpected {value_token!r}")
        if position < len(tokens) and tokens[position][1] in (";", ","):
            position += 1
    if closing is not None:
        raise TextFormatError(f"missing {closing!r} at end of text")
    return message, position


def _parse_list(tokens: list[tuple[str, str, int]], position: int, values: list[Value]) -> int:
    while position < len(tokens):
        kind, token, line = tokens[position]
        if token == "]":  # noqa: S105 - a token, not a password
            return position + 1
        if token == ",":  # noqa: S105 - a token, not a password
            position += 1
            continue
        if token in _CLOSING:
            nested, position = _parse_message(tokens, position + 1, _CLOSING[token])
            values.append(nested)
            continue
        if kind not in ("string", "number", "name"):
            raise TextFormatError(f"line {line}: unexpected {token!r} in a list")
        values.append(_scalar(kind, token))
        position += 1
    raise TextFormatError("missing ']' at end of text")
