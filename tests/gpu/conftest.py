"""Tests that need a CUDA GPU. CI has none, so without CUDA this folder is not collected at
all (not even imported); ``make test`` on the GPU machine runs them with the rest."""

import torch

collect_ignore_glob = [] if torch.cuda.is_available() else ["test_*.py"]
