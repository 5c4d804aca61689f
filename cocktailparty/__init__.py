"""cocktailparty: separate overlapping talkers, and pick out one known voice."""

__version__ = "0.1.0"
