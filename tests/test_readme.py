"""The README is the contract a clone carries: self-contained, and true to the running API."""

import re
from typing import Any

import pytest
from httpx import AsyncClient

from fastapi1.config import DeliverySettings, Limits, Settings
from tests.conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


class TestReadme:
    def test_relative_links_stay_inside_the_repository_and_resolve(self) -> None:
        for target in re.findall(r"\]\(([^)#\s]+)", README):
            if re.match(r"[a-z]+:", target):
                continue
            resolved = (PROJECT_ROOT / target).resolve()
            assert resolved.is_relative_to(PROJECT_ROOT), f"{target} is outside the repository"
            assert resolved.exists(), f"{target} does not exist"

    async def test_every_route_of_the_openapi_document_is_documented(self, client: AsyncClient) -> None:
        openapi: dict[str, Any] = (await client.get("/openapi.json")).json()
        for path, operations in openapi["paths"].items():
            # A path parameter may be named differently in prose: /notifications/v1/{id}.
            pattern = r"\{[^}]+\}".join(re.escape(part) for part in re.split(r"\{[^}]+\}", path))
            for method in operations:
                assert re.search(rf"{method.upper()} {pattern}", README), f"{method.upper()} {path}"

    @pytest.mark.parametrize(
        "settings_class",
        [
            Settings,
            Limits,
            DeliverySettings,
        ],
    )
    def test_every_setting_is_in_the_configuration_table(
        self, settings_class: type[Settings | Limits | DeliverySettings]
    ) -> None:
        prefix = settings_class.model_config.get("env_prefix", "")
        for name in settings_class.model_fields:
            assert f"| `{(prefix + name).upper()}` |" in README, (prefix + name).upper()
