"""Load test of the notification API, and seed 004's prediction client.

    ./scripts/run_app.sh &      # WORKERS=2 ./scripts/run_app.sh for two processes
    .venv/bin/locust --headless -u 60 -r 10 -t 30s --host http://127.0.0.1:8000

The headline figure is notifications per second into the database: the ``multiple`` task
stores 100 per request, so its requests/s times 100. ``--tags multiple`` (or ``single``,
``read``) runs one kind of task alone.

``--tags predict`` runs the original batching gateway's locust user instead: the seed 004
request posted to ``/schedule`` with 1-5 s between requests. It is opt-in: without that tag
(a default run, or ``--tags multiple``) it is not spawned, so the notification runs and their
figures are what they were. A user class none of whose tasks the ``--tags`` select is not
spawned either, so ``--tags predict`` runs only the predict user.
"""

import random
from typing import Any

from locust import FastHttpUser, User, between, events, tag, task
from locust.env import Environment

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


# The original load script's request: seed 004's payload (its request script's), one agent.
SEED_PREDICTION = {
    "client_id": "test",
    "run_slug": "0",
    "observations": {"test": {"observations": [0.1, 0.2], "agent_type": "lr", "nn_model_name": "foundation-v1"}},
}


class PredictUser(FastHttpUser):
    """Seed 004's locust user: the request script's payload to ``/schedule``, 1-5 s apart (``--tags predict``)."""

    wait_time = between(1, 5)
    opt_in_tag = "predict"

    @tag("predict")
    @task
    def schedule(self) -> None:
        """POST /schedule with the seed's one-agent request; the mock backend answers in 3-7 s."""
        with self.client.post("/schedule", json=SEED_PREDICTION, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")


def tagged(user_class: type[User], tags: set[str]) -> bool:
    """Whether any task of a user class carries one of ``tags``.

    Args:
        user_class: A user class.
        tags: The tags asked for.
    """
    return any(tags & getattr(function, "locust_tag_set", set()) for function in user_class.tasks)


def spawned(user_class: type[User], tags: set[str]) -> bool:
    """Whether a run asking for ``tags`` (empty: no ``--tags``) should spawn this user class.

    Args:
        user_class: A user class of this file.
        tags: The tags asked for.
    """
    if not tags:
        return getattr(user_class, "opt_in_tag", None) is None
    return tagged(user_class, tags)


@events.init.add_listener
def select_user_classes(environment: Environment, **_: Any) -> None:
    """Drop the user classes this run does not ask for, before any user spawns.

    Args:
        environment: Locust's environment; its user classes are filtered in place.
    """
    tags = set(getattr(environment.parsed_options, "tags", None) or [])
    chosen = [user_class for user_class in environment.user_classes if spawned(user_class, tags)]
    if chosen:
        environment.user_classes[:] = chosen
