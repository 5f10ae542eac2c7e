"""JSON response rendered with orjson, for handlers that return plain data rather than models."""

import uuid
from typing import Any

import orjson
from starlette.responses import JSONResponse


def uuid_text(value: object) -> str:
    """Render the UUID types orjson does not know natively (asyncpg returns its own, faster one).

    Args:
        value: What orjson could not serialise.

    Returns:
        The UUID's canonical text.

    Raises:
        TypeError: For anything that is not a UUID.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class OrjsonResponse(JSONResponse):
    """A JSONResponse whose body orjson renders (UTC datetimes and UUIDs included)."""

    def render(self, content: Any) -> bytes:
        """Serialise ``content`` to JSON bytes.

        Args:
            content: JSON-compatible data, datetimes and UUIDs.

        Returns:
            The UTF-8 JSON body.
        """
        return orjson.dumps(content, default=uuid_text)
