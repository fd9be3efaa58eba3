"""Prefect flows: schedules, retries, concurrency, deployments. Wiring only."""
