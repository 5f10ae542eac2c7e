"""fastapi1: an asynchronous notification service on FastAPI and PostgreSQL."""
