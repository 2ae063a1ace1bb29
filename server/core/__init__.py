"""The federation core: the round loop and its observers, settings from one source, checkpoints."""
