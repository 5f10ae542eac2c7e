"""The application class: FastAPI, with an OpenAPI document whose integer bounds stay integers.

The ``/v2`` routes answer bad input with GOV.UK Notify's 400, so their documents do not carry
the 422 FastAPI adds to every operation with parameters.
"""

import math
from typing import Any

from fastapi import FastAPI

# JSON Schema keywords that FastAPI's OpenAPI models (fastapi/openapi/models.py, Schema) type
# as float: validating the finished document through them turns every integer bound under
# components/schemas into a float, and beyond 2**53 into another number: 2**63 - 1 comes out
# as 9.223372036854776e18, which is 2**63, so a generated client accepts what the server
# rejects. Paths are typed Any there and keep pydantic's exact integers.
# See fastapi/fastapi#3355 and #9517.
NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
# The formats' own ranges: the float FastAPI made of a bound at an end of its format's range
# can only have been that end.
INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def exact_integer_bounds(schema: dict[str, Any]) -> None:
    """Give an integer schema's numeric keywords back their integer values, in place.

    Args:
        schema: A JSON schema of ``"type": "integer"``.
    """
    # Without a format there is no range, and nothing to clamp to.
    low, high = INTEGER_RANGES.get(schema.get("format", ""), (-math.inf, math.inf))
    for keyword in NUMERIC_KEYWORDS:
        value = schema.get(keyword)
        if isinstance(value, float) and value.is_integer():
            schema[keyword] = min(max(int(value), low), high)


def exact_integers(node: object) -> None:
    """Apply :func:`exact_integer_bounds` to every integer schema under ``node``.

    Args:
        node: Part of the OpenAPI document.
    """
    if isinstance(node, dict):
        if node.get("type") == "integer":
            exact_integer_bounds(node)
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            exact_integers(item)


# Routes whose bad input is a 400 in GOV.UK Notify's shape, never FastAPI's 422 (fastapi1.v2).
NOTIFY_PREFIXES = ("/v2/", "/service/")


def without_fastapi_422(paths: dict[str, Any]) -> None:
    """Drop the 422 FastAPI documents on every operation with parameters from the routes that never send one.

    Args:
        paths: The document's paths.
    """
    for path, operations in paths.items():
        if path.startswith(NOTIFY_PREFIXES):
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)


class Fastapi1(FastAPI):
    """FastAPI, with an OpenAPI document whose integer bounds are integers."""

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document (built once by FastAPI; corrected in place, which is idempotent).

        Returns:
            The document.
        """
        document = super().openapi()
        exact_integers(document.get("components"))
        without_fastapi_422(document.get("paths", {}))
        return document
