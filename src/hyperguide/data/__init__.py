"""Task universes: task structure (questions, answers, example ids), splits, statistics and frozen features."""
