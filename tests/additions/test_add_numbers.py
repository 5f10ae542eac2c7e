"""POST /add_numbers: the sum of 1 to 100,000 signed 64-bit integers."""

import pytest
from httpx import AsyncClient

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class TestAddNumbers:
    async def test_the_original_example(self, client: AsyncClient) -> None:
        response = await client.post("/add_numbers", json={"numbers": [1, 2, 3, 4]})
        assert response.status_code == 200
        assert response.json() == {"sum": 10}

    async def test_100000_numbers_at_the_extremes_sum_exactly(self, client: AsyncClient) -> None:
        numbers = [INT64_MAX, INT64_MIN] * 50_000
        numbers[0] = INT64_MAX
        numbers[1] = INT64_MAX
        response = await client.post("/add_numbers", json={"numbers": numbers})
        assert response.status_code == 200
        assert response.json() == {"sum": sum(numbers)}

    @pytest.mark.parametrize(
        "numbers", [[], [1] * 100_001, [1.5], [1.0], [True], ["1"], [None], [INT64_MAX + 1], [[1]], None, 5]
    )
    async def test_invalid_numbers_are_422(self, client: AsyncClient, numbers: object) -> None:
        response = await client.post("/add_numbers", json={"numbers": numbers})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][:2] == ["body", "numbers"]
