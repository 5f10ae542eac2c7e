"""The prediction gateway: requests split into rows, batched per model, answered per client."""
