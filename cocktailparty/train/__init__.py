"""Training: the engine (configs, datasets, the Trainer, checkpoints folder, CLI entry) and the losses."""
