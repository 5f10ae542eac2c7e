"""Notify's limits: requests per API key per sliding minute, notifications per service per UTC day."""

from fastapi1.limits.limiter import Limiter, Reservation, open_limiter

__all__ = ["Limiter", "Reservation", "open_limiter"]
