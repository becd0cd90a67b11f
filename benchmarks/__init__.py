"""Reproducible benchmarks of the census agent (run each with ``uv run python -m benchmarks.<name>``)."""
