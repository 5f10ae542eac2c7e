"""Response bodies of the status routes."""

from typing import Literal

from pydantic import BaseModel


class Readiness(BaseModel):
    """The dependencies the service needs, each ``"ok"`` when it answers."""

    database: Literal["ok"]
