"""Request bodies validated straight from bytes, for the routes that carry large payloads.

FastAPI parses a JSON body with ``json.loads`` and then validates the Python objects;
pydantic's ``validate_json`` does both in one pass in Rust, several times faster for a
1,000-item list or 100,000 pairs. Errors keep FastAPI's 422 shape (``loc`` starts with
``"body"``).
"""

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")


def parse_json_body(adapter: TypeAdapter[T], body: bytes) -> T:
    """Validate a raw JSON body.

    Args:
        adapter: The type the body must have.
        body: The raw request body.

    Returns:
        The validated value.

    Raises:
        RequestValidationError: When the body is not JSON or not of that type (a 422).
    """
    try:
        return adapter.validate_json(body)
    except ValidationError as error:
        errors = [{"type": item["type"], "loc": ("body", *item["loc"]), "msg": item["msg"]} for item in error.errors()]
        raise RequestValidationError(errors) from None


def request_body_schema(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads its body itself.

    Args:
        schema: JSON schema of the body.
        examples: Named OpenAPI examples.

    Returns:
        The ``openapi_extra`` value for the route.
    """
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}
    }
