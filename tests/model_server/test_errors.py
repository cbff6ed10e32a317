"""The error tree in ``model_server.errors``'s docstring names every error a client may see."""

from __future__ import annotations

import re

from clothing.model_server import errors


def test_the_docstring_tree_lists_every_serving_error() -> None:
    assert errors.__doc__ is not None
    drawn = re.findall(r"^\s+[├└]── (\w+)", errors.__doc__, flags=re.MULTILINE)
    defined = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, errors.ServingError)
        and value is not errors.ServingError
    ]
    assert drawn == defined
