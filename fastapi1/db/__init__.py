"""Database infrastructure: declarative base, engines, sessions and the embedded server."""
