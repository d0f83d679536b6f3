"""Evaluation: per-task metrics, statistics over seeds, and the harness that writes results.json."""
