"""Airflow operators and hooks: thin adapters from a task context to the core."""
