"""The mock model server over HTTP: ``python -m fastapi1.mock_backend [--host H] [--port P]``.

It answers ``POST /models/{nn_model_name}/predict`` exactly as the in-process mock does
(``BACKEND_DELAY_MIN_S``-``BACKEND_DELAY_MAX_S`` per call, the sum of each row, a number for
each text, HTTP 500 for the model ``mock-failure``), so the gateway can run with
``BACKEND_URL`` pointing at it as it would at a real model server.
"""

import argparse
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from fastapi1.config import Settings
from fastapi1.predictions.backends import (
    BackendError,
    BackendRequest,
    BackendResponse,
    MockBackend,
    TextBackendRequest,
    TextBackendResponse,
)
from fastapi1.responses import OrjsonResponse

DEFAULT_PORT = 8001


def create_mock_app(settings: Settings | None = None) -> FastAPI:
    """Build the mock model server.

    Args:
        settings: The mock delays; read from the environment when omitted.
    """
    settings = settings or Settings()
    mock = MockBackend(settings.backend_delay_min_s, settings.backend_delay_max_s)
    app = FastAPI(title="fastapi1 mock backend", summary="A slow stand-in for neural-network model servers.")

    @app.post(
        "/models/{nn_model_name}/predict",
        summary="Answer one batch",
        response_model=BackendResponse | TextBackendResponse,
        responses={500: {"description": "The model `mock-failure` fails every call"}},
    )
    async def predict(nn_model_name: str, batch: BackendRequest | TextBackendRequest) -> OrjsonResponse:
        """One action per observation row (its sum), or one result per text.

        \f
        Args:
            nn_model_name: The model.
            batch: Observations or texts.

        Returns:
            The answers, or a 500.
        """
        try:
            if isinstance(batch, TextBackendRequest):
                return OrjsonResponse({"result_array": await mock.generate(nn_model_name, batch.input_array)})
            actions = await mock.predict(nn_model_name, batch.agent_type, batch.observation_array)
        except BackendError as error:
            return OrjsonResponse({"detail": str(error)}, status_code=500)
        return OrjsonResponse({"actions_array": actions})

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the mock backend until interrupted.

    Args:
        argv: Command-line arguments; ``sys.argv`` when omitted.
    """
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m fastapi1.mock_backend", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="interface to listen on (default: $HOST)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    arguments = parser.parse_args(argv)
    uvicorn.run(create_mock_app(settings), host=arguments.host, port=arguments.port)


if __name__ == "__main__":
    main()
