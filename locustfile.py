"""Load test: `locust --headless -u 60 -r 10 -t 30s --host http://127.0.0.1:8000`."""

from locust import FastHttpUser, task


class StatusUser(FastHttpUser):
    """Probes the status routes, the floor of what the HTTP layer costs."""

    @task
    def heartbeat(self) -> None:
        """GET /status/heartbeat."""
        self.client.get("/status/heartbeat")
