"""The limits' refusals as a client sees them: 429 with Retry-After, 503 for a store that does not answer."""

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from fastapi1.errors import AppError, DailyLimitExceeded, LimitsUnavailable, RateLimitExceeded, install_error_handlers


async def rendered(error: AppError) -> tuple[int, dict[str, str], object]:
    """Raise ``error`` in a route of an application with the service's error handlers."""
    app = FastAPI()
    install_error_handlers(app, 10.0)

    @app.get("/")
    async def fail() -> None:
        raise error

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/")
    return response.status_code, dict(response.headers), response.json()


class TestRendering:
    async def test_the_rate_limit_is_a_429_with_notifys_message_and_retry_after(self) -> None:
        status, headers, body = await rendered(RateLimitExceeded("test", 3000, 60, 17))
        assert status == 429
        assert headers["retry-after"] == "17"
        assert body == {"detail": "Exceeded rate limit for key type TEST of 3000 requests per 60 seconds"}

    async def test_the_daily_limit_is_a_429_with_notifys_message_and_retry_after(self) -> None:
        status, headers, body = await rendered(DailyLimitExceeded(250_000, 3600))
        assert (status, headers["retry-after"]) == (429, "3600")
        assert body == {"detail": "Exceeded send limits (250000) for today"}

    async def test_a_store_that_does_not_answer_is_a_503(self) -> None:
        status, _, body = await rendered(
            LimitsUnavailable("Limits unavailable: Redis does not answer, try again shortly")
        )
        assert (status, body) == (503, {"detail": "Limits unavailable: Redis does not answer, try again shortly"})
