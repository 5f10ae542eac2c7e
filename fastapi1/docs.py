"""Swagger UI (/docs) and ReDoc (/redoc) served with their assets from the application itself.

FastAPI's built-in pages load their JavaScript and CSS from cdn.jsdelivr.net, so without
internet access (this machine, many production networks) they stay blank. fastapi-offline
ships the same files inside its package; they are mounted under /docs/assets and the pages,
built with FastAPI's own HTML helpers (its documented self-hosting recipe), point at them
with same-origin URLs only. The application must be created with ``docs_url=None,
redoc_url=None`` so FastAPI does not register its CDN pages first.
"""

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
# (package, directory inside it): found through the import system, so it works wherever pip put it.
ASSETS_PACKAGE = ("fastapi_offline", "static")


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI, its OAuth2 redirect page, ReDoc and their assets without any CDN.

    Nothing is added when the application has no OpenAPI document (``openapi_url=None``),
    as FastAPI itself does.

    Args:
        app: The application, created with ``docs_url=None, redoc_url=None``.
    """
    if app.openapi_url is None:
        return
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    if app.swagger_ui_oauth2_redirect_url:
        app.add_route(app.swagger_ui_oauth2_redirect_url, swagger_ui_oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)


def root_path(request: Request) -> str:
    """The prefix a proxy stripped from the request, which every URL the browser follows needs back.

    Args:
        request: The request for a page.

    Returns:
        The root path without a trailing slash ("" when served at the root).
    """
    return str(request.scope.get("root_path", "")).rstrip("/")


async def swagger_ui(request: Request) -> HTMLResponse:
    """The Swagger UI page, configured as FastAPI configures its own.

    Args:
        request: The request for the page.

    Returns:
        The page.
    """
    app: FastAPI = request.app
    root = root_path(request)
    redirect_url = app.swagger_ui_oauth2_redirect_url
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=f"{root}{redirect_url}" if redirect_url else None,
        init_oauth=app.swagger_ui_init_oauth,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )


async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
    """The page an OAuth2 provider sends the browser back to after "Authorize" in Swagger UI.

    Args:
        request: The request for the page.

    Returns:
        The page.
    """
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> HTMLResponse:
    """The ReDoc page.

    Args:
        request: The request for the page.

    Returns:
        The page.
    """
    app: FastAPI = request.app
    root = root_path(request)
    return get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        # Google's fonts would come from fonts.googleapis.com; ReDoc falls back to local ones.
        with_google_fonts=False,
    )
