"""The OpenAPI document is a usable manual: summaries, examples, declared errors."""

import json
from typing import Any

import pytest
from httpx import AsyncClient


@pytest.fixture
async def openapi(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


class TestOpenApi:
    async def test_every_route_has_a_summary(self, openapi: dict[str, Any]) -> None:
        for path, operations in openapi["paths"].items():
            for method, operation in operations.items():
                assert operation.get("summary"), f"{method.upper()} {path}"

    @pytest.mark.parametrize(
        ("method", "path", "codes"),
        [
            ("post", "/notifications/v1/", {"201", "404", "413", "422", "503"}),
            ("post", "/notifications/v1/multiple", {"201", "404", "413", "422", "503"}),
            ("get", "/notifications/v1/{notification_id}", {"200", "404", "422", "503"}),
            ("get", "/notifications/v1/", {"200", "404", "422", "503"}),
            ("post", "/services/v1/", {"201", "409", "413", "422", "503"}),
            ("get", "/services/v1/{service_id}", {"200", "404", "422", "503"}),
            ("post", "/services/v1/{service_id}/templates", {"201", "404", "409", "413", "422", "503"}),
            ("get", "/services/v1/{service_id}/templates", {"200", "404", "422", "503"}),
            ("get", "/services/v1/{service_id}/templates/{template_id}", {"200", "404", "422", "503"}),
            ("post", "/add", {"200", "400", "409", "413", "422", "503"}),
            ("post", "/process_batch", {"200", "400", "409", "413", "422", "503"}),
            ("get", "/add/{batchid}", {"200", "404", "422", "503"}),
            ("post", "/add_numbers", {"200", "400", "413", "422"}),
            ("get", "/status/ready", {"200", "503"}),
            ("get", "/status/heartbeat", {"204"}),
        ],
    )
    async def test_error_responses_are_declared(
        self, openapi: dict[str, Any], method: str, path: str, codes: set[str]
    ) -> None:
        assert codes <= set(openapi["paths"][path][method]["responses"])

    async def test_every_route_with_a_body_declares_413_and_422_with_a_json_body(self, openapi: dict[str, Any]) -> None:
        with_body = [op for ops in openapi["paths"].values() for op in ops.values() if "requestBody" in op]
        assert len(with_body) == 7
        for operation in with_body:
            assert {"413", "422"} <= set(operation["responses"]), operation["summary"]
            assert list(operation["requestBody"]["content"]) == ["application/json"]
            too_large = operation["responses"]["413"]["content"]["application/json"]["schema"]
            assert too_large == {"$ref": "#/components/schemas/ErrorMessage"}

    async def test_the_original_examples_are_shown(self, openapi: dict[str, Any]) -> None:
        single = json.dumps(openapi["paths"]["/notifications/v1/"]["post"]["requestBody"])
        multiple = json.dumps(openapi["paths"]["/notifications/v1/multiple"]["post"]["requestBody"])
        assert "Incubus" in single
        assert "Korn" in multiple
        assert "Soundgarden" in multiple
