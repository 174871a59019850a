"""Running it: health, metrics, the /healthz and /metrics endpoints, and logging."""
