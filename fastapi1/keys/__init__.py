"""API keys of services and the guest list of their team keys: routes under ``/services/v1``."""
