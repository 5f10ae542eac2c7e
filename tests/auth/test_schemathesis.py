"""schemathesis with AUTH_REQUIRED on: generated requests, each with the token its route needs.

Service routes get a token of a real key, admin routes an admin token, so the generated
requests reach the handlers (and their declared statuses) instead of stopping at a 401.
"""

from typing import Any

import pytest
from httpx import AsyncClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.auth.conftest import Key, admin_headers
from tests.test_schemathesis import GATEWAY_PATHS, OPERATIONS, POSITIVE, REQUEST_ARGUMENTS, SEED

CASES = [pytest.param(operation, id=operation.label) for operation in OPERATIONS]


@pytest.mark.parametrize("operation", CASES)
@seed(SEED)
@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_with_a_token_every_status_is_declared_and_none_is_a_server_error(
    auth_client: AsyncClient, key: Key, operation: Any, data: st.DataObject
) -> None:
    case = data.draw(operation.as_strategy(generation_mode=POSITIVE))
    arguments = case.as_transport_kwargs(base_url=str(auth_client.base_url))
    request = {name: arguments[name] for name in REQUEST_ARGUMENTS if name in arguments}
    token = admin_headers() if operation.path.startswith("/services/v1") else key.headers()
    request["headers"] = {**request.get("headers", {}), **token}
    response = await auth_client.request(**request)
    assert response.status_code not in {401, 403}, response.text
    checks = [status_code_conformance, response_schema_conformance]
    case.validate_response(
        response, checks=checks if operation.path in GATEWAY_PATHS else [*checks, not_a_server_error]
    )
    assert response.status_code != 500, response.text
