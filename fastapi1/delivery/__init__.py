"""Delivery: the worker claims notifications from the outbox, hands them to providers, records the outcome."""
