"""The OpenAPI document declares who may call what: bearer schemes, so /docs shows the lock and takes a token."""

from typing import Any

from fastapi1.app import create_app

DOCUMENT: dict[str, Any] = create_app().openapi()
OPEN = {"/status/heartbeat", "/status/ready"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in DOCUMENT["paths"].items() for method, operation in item.items()]


class TestSecurity:
    def test_both_schemes_are_http_bearer(self) -> None:
        schemes = DOCUMENT["components"]["securitySchemes"]
        assert set(schemes) == {"ServiceToken", "AdminToken"}
        for scheme in schemes.values():
            assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
            assert "HS256" in scheme["bearerFormat"]

    def test_admin_routes_take_the_admin_token_and_the_others_a_service_token(self) -> None:
        for path, method, operation in operations():
            if path in OPEN:
                assert "security" not in operation, path
                continue
            expected = "AdminToken" if path.startswith("/services/v1") else "ServiceToken"
            assert operation["security"] == [{expected: []}], (method, path)

    def test_every_secured_route_declares_401_and_403(self) -> None:
        for path, _, operation in operations():
            if path not in OPEN:
                assert {"401", "403"} <= set(operation["responses"]), path
