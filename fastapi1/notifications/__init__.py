"""Notifications: create one or many, read one, list newest first."""
