"""Routes of the prediction gateway: ``POST /predict``, its alias ``POST /schedule``, and ``GET /predict/{id}``."""

import asyncio
import time
import uuid
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from fastapi1.auth.dependencies import authenticate_service
from fastapi1.bodies import CONTENT_TOO_LARGE, JsonBodyRoute, read_json_body
from fastapi1.db.session import ReadSession, WriteTransactions, WriteTransactionsDep
from fastapi1.errors import (
    CLIENT_CLOSED_REQUEST,
    BackendFailed,
    BodyValidationError,
    Forbidden,
    GatewayTimeout,
    NotFound,
    Overloaded,
    RateLimitExceeded,
    ServiceUnavailable,
    StillProcessing,
    Unauthenticated,
    responses,
)
from fastapi1.predictions import controller
from fastapi1.predictions.controller import Gateway
from fastapi1.predictions.schemas import (
    ACCEPTED_MESSAGE,
    AGENTS_EXAMPLE,
    BODY_TAGS,
    PREDICTION_BODY_MAX_BYTES,
    PREDICTION_REQUEST,
    TEXT_EXAMPLE,
    ClientRequest,
    ClientResponse,
    PredictionAccepted,
    PredictionComplete,
    PredictionFailed,
    TextRequest,
    TextResponse,
)
from fastapi1.responses import OrjsonResponse


class PredictionRoute(JsonBodyRoute):
    """A prediction route: its body may be as large as the largest valid request (PREDICTION_BODY_MAX_BYTES)."""

    max_body_bytes = PREDICTION_BODY_MAX_BYTES


# Checked for the token (and its rate limit) only: predictions are not owned by a service (see README).
router = APIRouter(
    tags=["predictions"],
    dependencies=[Depends(authenticate_service)],
    responses=responses(Unauthenticated, Forbidden, RateLimitExceeded),
    route_class=PredictionRoute,
)

T = TypeVar("T")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = (
    responses(BackendFailed, Overloaded, GatewayTimeout)
    | CONTENT_TOO_LARGE
    | {
        413: {
            **CONTENT_TOO_LARGE[413],
            "description": f"The request body is larger than {PREDICTION_BODY_MAX_BYTES} bytes, the largest valid"
            " request laid out as `json.dumps` does (sized from the `LIMIT_PREDICT_*` limits)",
        }
    }
    | {422: {"description": "Invalid body: the field and item are named in `detail`"}}
    | {
        202: {
            "model": PredictionAccepted,
            "description": "With `Async-Mode: true`: the job is stored; its answer is at the `Location`",
            "headers": {"Location": {"description": "`/predict/{prediction_id}`", "schema": {"type": "string"}}},
        }
    }
)
ERROR_RESPONSES[503]["description"] = (
    "Too much work is waiting (retry after the seconds in `Retry-After`), or, with a broker, the broker did not"
    " take the request within `BROKER_PUBLISH_TIMEOUT_S`"
)
READ_RESPONSES: dict[int | str, dict[str, Any]] = responses(StillProcessing, NotFound, ServiceUnavailable)
READ_RESPONSES[400]["headers"] = {
    "Retry-After": {"description": "Seconds to wait before asking again", "schema": {"type": "integer"}}
}


async def get_gateway(request: Request) -> Gateway:
    """Return the gateway the lifespan opened.

    Args:
        request: The current request.
    """
    # async: FastAPI runs a plain def dependency in a worker thread, a hop per request for nothing.
    return cast(Gateway, request.app.state.gateway)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
AsyncModeHeader = Annotated[
    str | None,
    Header(
        alias="Async-Mode",
        description="`true` (any case) stores the request as a job and answers `202` with its `Location`;"
        " any other value answers synchronously.",
    ),
]


def inline_refs(schema: Any, definitions: dict[str, Any]) -> Any:
    """Replace the ``$ref`` of a JSON schema by the definitions they name.

    A route that reads its own body has no place in the document's components for its
    models, and a ``$defs`` inside a request body would be resolved against the whole document.

    Args:
        schema: A schema or a part of one.
        definitions: The schema's ``$defs``.

    Returns:
        The schema without references.
    """
    if isinstance(schema, dict):
        if "$ref" in schema:
            return inline_refs(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {key: inline_refs(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [inline_refs(item, definitions) for item in schema]
    return schema


PREDICTION_SCHEMA = PREDICTION_REQUEST.json_schema()
PREDICTION_EXAMPLES = {
    "agents": {"summary": "Agents (the batching gateway's body)", "value": AGENTS_EXAMPLE},
    "text": {"summary": "Text (the job API's body)", "value": TEXT_EXAMPLE},
}
# The route reads its body itself (the union's tag must leave error locations), so the
# OpenAPI requestBody is given here rather than derived from a parameter.
PREDICTION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": inline_refs(PREDICTION_SCHEMA, PREDICTION_SCHEMA.get("$defs", {})),
                "examples": PREDICTION_EXAMPLES,
            }
        },
    }
}


def untagged(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union's tag from an error location: ``("body", "agents", "run_slug")`` -> ``("body", "run_slug")``.

    Args:
        loc: The location, ``"body"`` first.
    """
    return (loc[0], *loc[2:]) if len(loc) > 1 and loc[1] in BODY_TAGS else loc


async def read_prediction_request(request: Request) -> ClientRequest | TextRequest:
    """Read and validate either body by the rules of every route (see fastapi1.bodies).

    Args:
        request: The request, for its raw body.

    Raises:
        BodyValidationError: A 422 whose ``loc`` names the field as for a plain body,
            without the union's tag.
    """
    try:
        return (await read_json_body(request, PREDICTION_REQUEST))[1]
    except BodyValidationError as error:
        located = [{**item, "loc": untagged(item["loc"])} for item in error.errors()]
        raise BodyValidationError(located, error.total) from None


async def disconnected(request: Request) -> None:
    """Return when the client has gone away.

    Args:
        request: A request whose body was read.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Await ``work``, but cancel it if the client disconnects first, so its rows leave the queue.

    uvicorn does not cancel a handler whose client went away, and a prediction may wait for
    seconds: the route listens for ``http.disconnect`` itself.

    Args:
        request: The request, whose body was read.
        work: What answers it.

    Returns:
        The answer, or None when the client left first.
    """
    answer = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        answer.cancel()
        gone.cancel()
        # Neither task outlives the request, whatever ended the wait.
        await asyncio.wait((answer, gone))
    return None if answer.cancelled() else answer.result()


@router.post(
    "/predict",
    summary="Predict: actions for a client's agents, or a result for a text",
    response_model=ClientResponse | TextResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=PREDICTION_BODY,
)
async def predict(
    request: Request, gateway: GatewayDep, transactions: WriteTransactionsDep, async_mode: AsyncModeHeader = None
) -> Response:
    """Answer the agents body with an action per agent, or the text body with the text model's
    result. Rows of all clients are batched per model, agent type and observation length; a
    batch leaves when it holds `BATCH_MAX_SIZE` rows or its oldest row has waited
    `BATCH_MAX_WAIT_MS`. A failed batch answers its clients 502; a full queue answers 503 with
    `Retry-After`. With a broker (`BROKER_URL`) the rows are batched by the worker processes: a
    broker that does not take the request answers 503, no worker answering before
    `BACKEND_TIMEOUT_S` + `BROKER_REPLY_MARGIN_S` answers 504. With `Async-Mode: true` the
    request is stored as a job and answered `202`; its answer is then at `GET /predict/{prediction_id}`.

    \f
    Args:
        request: The request, for its raw body.
        gateway: The batcher and the text model.
        transactions: Write transactions, for ``Async-Mode: true``.
        async_mode: The ``Async-Mode`` header.
    """
    received_at = time.perf_counter()
    body = await read_prediction_request(request)
    if async_mode is not None and async_mode.strip().lower() == "true":
        return await accept_job(transactions, body)
    answer = await unless_disconnected(request, controller.predict(gateway, body, received_at))
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return OrjsonResponse(answer)


async def accept_job(transactions: WriteTransactions, body: ClientRequest | TextRequest) -> Response:
    """Store the request as a job, committed before the ``202`` is sent.

    Args:
        transactions: Write transactions.
        body: The validated body.
    """
    async with transactions() as session:
        prediction_id = await controller.submit(session, body)
    return OrjsonResponse(
        {"message": ACCEPTED_MESSAGE, "prediction_id": str(prediction_id)},
        status_code=202,
        headers={"Location": f"/predict/{prediction_id}"},
    )


@router.get(
    "/predict/{prediction_id}",
    summary="Read an asynchronous prediction's answer",
    response_model=PredictionComplete | PredictionFailed,
    responses=READ_RESPONSES,
)
async def get_prediction(prediction_id: uuid.UUID, session: ReadSession) -> Response:
    """The answer of a job stored by `Async-Mode: true`: `complete` with the synchronous call's
    body as `output`, or `failed` with the reason; `400` with `Retry-After` while it is pending.

    \f
    Args:
        prediction_id: The job.
        session: A read session.
    """
    return OrjsonResponse(await controller.read_job(session, prediction_id))


router.add_api_route(
    "/schedule",
    predict,
    methods=["POST"],
    summary="Predict (the original load script's name for POST /predict)",
    response_model=ClientResponse | TextResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=PREDICTION_BODY,
    operation_id="schedule",
)
