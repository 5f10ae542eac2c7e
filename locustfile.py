"""Load test of the notification API.

    ./scripts/run_app.sh &      # WORKERS=2 ./scripts/run_app.sh for two processes
    .venv/bin/locust --headless -u 60 -r 10 -t 30s --host http://127.0.0.1:8000

The headline figure is notifications per second into the database: the ``multiple`` task
stores 100 per request, so its requests/s times 100. ``--tags multiple`` (or ``single``,
``read``) runs one kind of task alone.
"""

import random
from typing import Any

from locust import FastHttpUser, between, tag, task

BANDS = ("Incubus", "Korn", "Soundgarden", "Deftones", "Tool")
MULTIPLE_SIZE = 100


def notification(index: int) -> dict[str, Any]:
    """One item like the original exercise's: a short ``to``, one key, some without personalization."""
    item: dict[str, Any] = {"to": f"user{index}@example.com"}
    if index % 4:
        item["personalization"] = {"band": random.choice(BANDS)}
    return item


class NotificationUser(FastHttpUser):
    """A client creating notifications one and a hundred at a time, and reading them back."""

    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        """Remember created ids so reads hit real rows."""
        self.created: list[str] = []

    @tag("multiple")
    @task(4)
    def create_multiple(self) -> None:
        """POST /notifications/v1/multiple with 100 items."""
        items = [notification(index) for index in range(MULTIPLE_SIZE)]
        with self.client.post("/notifications/v1/multiple", json=items, catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"status {response.status_code}")

    @tag("single", "read")
    @task(2)
    def create_single(self) -> None:
        """POST /notifications/v1/ and keep the id."""
        with self.client.post("/notifications/v1/", json=notification(1), catch_response=True) as response:
            if response.status_code == 201 and response.json():
                self.created = [response.json()["id"], *self.created[:99]]
            else:
                response.failure(f"status {response.status_code}")

    @tag("read")
    @task(2)
    def get_by_id(self) -> None:
        """GET /notifications/v1/{id} of a notification this user created."""
        if self.created:
            self.client.get(f"/notifications/v1/{random.choice(self.created)}", name="/notifications/v1/{id}")

    @tag("read")
    @task(1)
    def list_newest(self) -> None:
        """GET /notifications/v1/?limit=50."""
        self.client.get("/notifications/v1/?limit=50", name="/notifications/v1/?limit=50")
