"""Delivery receipts (GOV.UK Notify's callbacks): a service's callback, and the worker's relay that sends them."""
