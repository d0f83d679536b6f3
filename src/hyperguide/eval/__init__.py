"""Evaluation: per-task metrics, k-shot tasks, statistics over seeds, and the typed schema of results.json."""
