"""The worker process (``python -m fastapi1.worker``): relays the outbox and delivers notifications."""
