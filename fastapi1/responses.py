"""JSON response rendered with orjson, for handlers that return plain data rather than models."""

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """A JSONResponse whose body orjson renders (UTC datetimes and UUIDs included)."""

    def render(self, content: Any) -> bytes:
        """Serialise ``content`` to JSON bytes.

        Args:
            content: JSON-compatible data, datetimes and UUIDs.

        Returns:
            The UTF-8 JSON body.
        """
        return orjson.dumps(content)
