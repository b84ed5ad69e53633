"""Training infrastructure: configuration, losses, the training wrapper, distributed set-up, logging."""
