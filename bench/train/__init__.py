"""Training: the similarity regularizer, its schedule, checkpoints and the loop."""
