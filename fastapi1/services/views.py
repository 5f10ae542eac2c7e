"""Routes under ``/services/v1``: services and their templates."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from fastapi1.auth.dependencies import ADMIN_ONLY
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute
from fastapi1.db.session import ReadSession, WriteSession
from fastapi1.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthenticated, responses
from fastapi1.services import controller
from fastapi1.services.schemas import Service, ServiceCreate, Template, TemplateCreate, TemplateUpdate
from fastapi1.types import TemplateType

# Admin routes: an admin token where AUTH_REQUIRED, and a service token never.
router = APIRouter(
    prefix="/services/v1",
    tags=["services"],
    route_class=JsonBodyRoute,
    dependencies=[ADMIN_ONLY],
    responses=responses(Unauthenticated, Forbidden),
)

READ_ERRORS = responses(NotFound, ServiceUnavailable)


@router.post(
    "/",
    status_code=201,
    summary="Create a service",
    responses=responses(Conflict, ServiceUnavailable) | CONTENT_TOO_LARGE,
)
async def create_service(new: ServiceCreate, session: WriteSession) -> Service:
    """Create a service; its name must be unique (409 otherwise).

    \f
    Args:
        new: The requested service.
        session: The write session.

    Returns:
        The stored service.
    """
    return Service.model_validate(await controller.create_service(session, new))


@router.get("/{service_id}", summary="Get a service", responses=READ_ERRORS)
async def get_service(service_id: uuid.UUID, session: ReadSession) -> Service:
    """Return one service, or 404.

    \f
    Args:
        service_id: The service's id.
        session: A read session.

    Returns:
        The service.
    """
    return Service.model_validate(await controller.get_service(session, service_id))


@router.post(
    "/{service_id}/templates",
    status_code=201,
    summary="Create a template in a service",
    responses=responses(NotFound, Conflict, ServiceUnavailable) | CONTENT_TOO_LARGE,
)
async def create_template(service_id: uuid.UUID, new: TemplateCreate, session: WriteSession) -> Template:
    """Create a template; the name must be unique within the service (409), the service must exist (404).

    \f
    Args:
        service_id: The owning service.
        new: The requested template.
        session: The write session.

    Returns:
        The stored template with its placeholders.
    """
    return Template.model_validate(await controller.create_template(session, service_id, new))


@router.get("/{service_id}/templates", summary="List a service's templates", responses=READ_ERRORS)
async def list_templates(
    service_id: uuid.UUID,
    session: ReadSession,
    template_type: Annotated[TemplateType | None, Query(description="Only templates of this type.")] = None,
) -> list[Template]:
    """Return the service's templates at their current versions, sorted by name, or 404 when the service does not exist.

    \f
    Args:
        service_id: The service's id.
        session: A read session.
        template_type: Type filter.

    Returns:
        The templates.
    """
    templates = await controller.list_templates(session, service_id, template_type)
    return [Template.model_validate(template) for template in templates]


@router.get("/{service_id}/templates/{template_id}", summary="Get a template", responses=READ_ERRORS)
async def get_template(service_id: uuid.UUID, template_id: uuid.UUID, session: ReadSession) -> Template:
    """Return one template of the service, or 404.

    \f
    Args:
        service_id: The owning service.
        template_id: The template's id.
        session: A read session.

    Returns:
        The template.
    """
    return Template.model_validate(await controller.get_template(session, service_id, template_id))


@router.patch(
    "/{service_id}/templates/{template_id}",
    summary="Change a template (adds a version)",
    responses=responses(NotFound, Conflict, ServiceUnavailable) | CONTENT_TOO_LARGE,
)
async def update_template(
    service_id: uuid.UUID, template_id: uuid.UUID, change: TemplateUpdate, session: WriteSession
) -> Template:
    """Replace the fields given and add version n+1; earlier versions stay readable, and notifications
    keep the version they were sent with. A change that changes nothing adds no version.

    \f
    Args:
        service_id: The owning service.
        template_id: The template.
        change: The fields to replace.
        session: The write session.

    Returns:
        The template at its new version.
    """
    return Template.model_validate(await controller.update_template(session, service_id, template_id, change))


@router.get(
    "/{service_id}/templates/{template_id}/versions", summary="List every version of a template", responses=READ_ERRORS
)
async def list_template_versions(service_id: uuid.UUID, template_id: uuid.UUID, session: ReadSession) -> list[Template]:
    """Return every version of the template, oldest first, or 404.

    \f
    Args:
        service_id: The owning service.
        template_id: The template.
        session: A read session.

    Returns:
        The versions.
    """
    return [Template.model_validate(row) for row in await controller.list_versions(session, service_id, template_id)]


@router.get(
    "/{service_id}/templates/{template_id}/versions/{version}",
    summary="Get one version of a template",
    responses=READ_ERRORS,
)
async def get_template_version(
    service_id: uuid.UUID,
    template_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: ReadSession,
) -> Template:
    """Return the template as it was at that version, or 404.

    \f
    Args:
        service_id: The owning service.
        template_id: The template.
        version: The version, from 1.
        session: A read session.

    Returns:
        The template at that version.
    """
    return Template.model_validate(await controller.get_template(session, service_id, template_id, version))
