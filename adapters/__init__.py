"""dqnkit.adapters: environments, the training loop, checkpoints, logs and the CLI."""
