"""Meta-learning procedures: task losses, the batched inner loop, and the methods (baselines) built on them."""
