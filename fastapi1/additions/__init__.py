"""Batch integer addition, computed on a process pool and stored idempotently."""
