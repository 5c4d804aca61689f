"""Shared plumbing: audio I/O, atomic writes, errors, progress, configs, CPU and signal handling, checkpoints."""
