"""``python -m fastapi1.worker``."""

from fastapi1.worker.main import main

main()
