"""Evaluation: metrics, test-set evaluation, cost profiling and speaker verification."""
