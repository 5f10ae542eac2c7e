"""The byte cap on request bodies: refused before parsing, with nothing stored."""

from httpx import AsyncClient

from fastapi1.config import LIMITS


class TestBodyLimit:
    async def test_a_body_over_the_cap_is_413_and_one_at_the_cap_is_parsed(self, client: AsyncClient) -> None:
        headers = {"content-type": "application/json"}
        over = await client.post("/add_numbers", content=b" " * (LIMITS.max_body_bytes + 1), headers=headers)
        assert over.status_code == 413
        at_cap = b'{"numbers": [1]}'.ljust(LIMITS.max_body_bytes)
        assert (await client.post("/add_numbers", content=at_cap, headers=headers)).status_code == 200
