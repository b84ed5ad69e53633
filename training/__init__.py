"""Training STCN (supplementary F): configuration, data, the starting network, losses, the training wrapper,
the loop and its step, checkpoints, distributed set-up, logging."""
