"""The OpenAPI document is a usable manual: summaries, examples, declared errors, exact bounds."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient

from fastapi1.additions.schemas import AddNumbersRequest, AddRequest

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def integer_schemas(node: object) -> Iterator[dict[str, Any]]:
    """Every schema of ``"type": "integer"`` anywhere in the document."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            yield node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from integer_schemas(item)


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
            ("post", "/predict", {"200", "202", "413", "422", "502", "503"}),
            ("post", "/schedule", {"200", "202", "413", "422", "502", "503"}),
            ("get", "/predict/{prediction_id}", {"200", "400", "404", "422", "503"}),
        ],
    )
    async def test_error_responses_are_declared(
        self, openapi: dict[str, Any], method: str, path: str, codes: set[str]
    ) -> None:
        assert codes <= set(openapi["paths"][path][method]["responses"])

    async def test_every_route_with_a_body_declares_413_and_422_with_a_json_body(self, openapi: dict[str, Any]) -> None:
        with_body = [(path, op) for path, ops in openapi["paths"].items() for op in ops.values() if "requestBody" in op]
        assert len(with_body) == 19
        for path, operation in with_body:
            # GOV.UK Notify's API answers bad input with its own 400, never a 422.
            bad_input = {"400"} if path.startswith("/v2/") else {"422"}
            assert {"413", *bad_input} <= set(operation["responses"]), operation["summary"]
            assert "422" not in operation["responses"] or not path.startswith("/v2/")
            assert list(operation["requestBody"]["content"]) == ["application/json"]
            too_large = operation["responses"]["413"]["content"]["application/json"]["schema"]
            assert too_large == {"$ref": "#/components/schemas/ErrorMessage"}

    async def test_the_original_examples_are_shown(self, openapi: dict[str, Any]) -> None:
        single = json.dumps(openapi["paths"]["/notifications/v1/"]["post"]["requestBody"])
        multiple = json.dumps(openapi["paths"]["/notifications/v1/multiple"]["post"]["requestBody"])
        assert "Incubus" in single
        assert "Korn" in multiple
        assert "Soundgarden" in multiple


class TestIntegerBounds:
    """Bounds are exact integers, so a generated client refuses exactly what the server refuses."""

    async def test_signed_64_bit_bounds_are_exact_integers(self, client: AsyncClient) -> None:
        # Parsed by hand: json.loads keeps integers exact, and a float would show as one.
        document = json.loads((await client.get("/openapi.json")).content)
        schemas = document["components"]["schemas"]
        numbers = schemas["AddNumbersRequest"]["properties"]["numbers"]["items"]
        pairs = schemas["AddRequest"]["properties"]["payload"]["items"]["prefixItems"]
        for bounded in (numbers, *pairs):
            assert (bounded["minimum"], bounded["maximum"], bounded["format"]) == (INT64_MIN, INT64_MAX, "int64")
            assert type(bounded["minimum"]) is int
            assert type(bounded["maximum"]) is int
        assert b'"maximum":9223372036854775807' in (await client.get("/openapi.json")).content

    async def test_no_integer_schema_anywhere_has_a_float_bound(self, openapi: dict[str, Any]) -> None:
        found = [
            schema for schema in integer_schemas(openapi) if any(keyword in schema for keyword in NUMERIC_KEYWORDS)
        ]
        assert len(found) >= 4
        for schema in found:
            assert all(type(schema[key]) is int for key in NUMERIC_KEYWORDS if key in schema), schema

    @pytest.mark.parametrize("model", [AddRequest, AddNumbersRequest])
    async def test_the_document_carries_the_bounds_pydantic_validates_with(
        self, openapi: dict[str, Any], model: type[AddRequest | AddNumbersRequest]
    ) -> None:
        exact = model.model_json_schema()
        assert openapi["components"]["schemas"][model.__name__]["properties"] == exact["properties"]

    async def test_the_prediction_bodies_are_documented_without_dangling_references(
        self, openapi: dict[str, Any]
    ) -> None:
        body = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert "$ref" not in json.dumps(body["schema"])
        assert set(body["examples"]) == {"agents", "text"}
        assert "foundation-v1" in json.dumps(body["examples"])
        assert {"Async-Mode"} <= {parameter["name"] for parameter in openapi["paths"]["/predict"]["post"]["parameters"]}

    async def test_async_mode_declares_the_location_and_the_retry_after(self, openapi: dict[str, Any]) -> None:
        accepted = openapi["paths"]["/predict"]["post"]["responses"]["202"]
        assert "Location" in accepted["headers"]
        pending = openapi["paths"]["/predict/{prediction_id}"]["get"]["responses"]["400"]
        assert "Retry-After" in pending["headers"]
