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
            ("post", "/notifications/v1/", {"201", "404", "422"}),
            ("post", "/notifications/v1/multiple", {"201", "404", "422"}),
            ("get", "/notifications/v1/{notification_id}", {"200", "404", "422"}),
            ("get", "/notifications/v1/", {"200", "404", "422"}),
            ("post", "/services/v1/", {"201", "409", "422"}),
            ("get", "/services/v1/{service_id}", {"200", "404"}),
            ("post", "/services/v1/{service_id}/templates", {"201", "404", "409", "422"}),
            ("get", "/services/v1/{service_id}/templates", {"200", "404"}),
            ("get", "/services/v1/{service_id}/templates/{template_id}", {"200", "404"}),
            ("get", "/status/ready", {"200", "503"}),
            ("post", "/predict", {"200", "422", "501", "502", "503"}),
            ("post", "/schedule", {"200", "422", "501", "502", "503"}),
        ],
    )
    async def test_error_responses_are_declared(
        self, openapi: dict[str, Any], method: str, path: str, codes: set[str]
    ) -> None:
        assert codes <= set(openapi["paths"][path][method]["responses"])

    async def test_the_original_examples_are_shown(self, openapi: dict[str, Any]) -> None:
        single = json.dumps(openapi["paths"]["/notifications/v1/"]["post"]["requestBody"])
        multiple = json.dumps(openapi["paths"]["/notifications/v1/multiple"]["post"]["requestBody"])
        assert "Incubus" in single
        assert "Korn" in multiple
        assert "Soundgarden" in multiple

    async def test_the_prediction_bodies_are_documented_without_dangling_references(
        self, openapi: dict[str, Any]
    ) -> None:
        body = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert "$ref" not in json.dumps(body["schema"])
        assert set(body["examples"]) == {"agents", "text"}
        assert "foundation-v1" in json.dumps(body["examples"])
        assert {"Async-Mode"} <= {parameter["name"] for parameter in openapi["paths"]["/predict"]["post"]["parameters"]}
