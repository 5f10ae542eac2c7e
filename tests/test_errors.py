"""A 422 never echoes the request back at its own size: bounded ``loc`` strings, ``msg`` and count."""

from typing import Any

import pytest
from httpx import AsyncClient

from fastapi1.errors import LOC_CHARS, MSG_CHARS


class TestLocations:
    async def test_a_huge_personalization_key_comes_back_cut_with_an_ellipsis(self, client: AsyncClient) -> None:
        key = "k" * 100_000
        response = await client.post("/notifications/v1/", json={"to": "x", "personalization": {key: "v"}})
        assert response.status_code == 422
        assert len(response.content) < 1_000
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "personalization", "k" * LOC_CHARS + "…", "[key]"]

    async def test_huge_keys_in_every_item_of_a_list_stay_small(self, client: AsyncClient) -> None:
        items = [{"to": "x", "personalization": {f"{index}" * 10_000: "v"}} for index in range(10)]
        response = await client.post("/notifications/v1/multiple", json=items)
        assert response.status_code == 422
        assert len(response.content) < 5_000
        assert all(len(part) <= LOC_CHARS + 1 for error in response.json()["detail"] for part in error["loc"][2:3])

    async def test_an_unknown_field_with_a_huge_name_comes_back_cut(self, client: AsyncClient) -> None:
        response = await client.post("/services/v1/", json={"name": "s", "x" * 50_000: 1})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "x" * LOC_CHARS + "…"]

    async def test_a_legal_key_comes_back_whole(self, client: AsyncClient) -> None:
        key = "k" * 64
        response = await client.post("/notifications/v1/", json={"to": "x", "personalization": {key: 1}})
        assert response.json()["detail"][0]["loc"] == ["body", "personalization", key]


class TestMessages:
    async def test_a_long_missing_personalization_message_is_cut_with_an_ellipsis(self, client: AsyncClient) -> None:
        service = (await client.post("/services/v1/", json={"name": "many placeholders"})).json()
        content = " ".join(f"(({index:064d}))" for index in range(100))
        template = await client.post(f"/services/v1/{service['id']}/templates", json={"name": "t", "content": content})
        assert template.status_code == 201
        response = await client.post("/notifications/v1/", json={"to": "x", "template_id": template.json()["id"]})
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "personalization"]
        assert error["msg"].startswith("Missing personalization: ")
        assert error["msg"].endswith("…")
        assert len(error["msg"]) == MSG_CHARS + 1

    @pytest.mark.parametrize(
        ("path", "params"),
        [("/notifications/v1/", {"older_than": "x" * 60_000}), ("/notifications/v1/", {"limit": "9" * 60_000})],
    )
    async def test_query_errors_are_bounded_too(self, client: AsyncClient, path: str, params: dict[str, Any]) -> None:
        response = await client.get(path, params=params)
        assert response.status_code == 422
        assert len(response.content) < 1_000
