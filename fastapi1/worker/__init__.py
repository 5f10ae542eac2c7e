"""The worker process (``python -m fastapi1.worker``): delivers notifications and runs prediction jobs."""
