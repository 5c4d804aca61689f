import pytest
import torch

from cocktailparty.core.device import default_device, resolve_device
from cocktailparty.core.errors import CocktailError


def test_names_and_the_default():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None) == default_device()


def test_a_bad_name_is_one_line():
    with pytest.raises(CocktailError, match=r"--device 'gpu0': not a device name"):
        resolve_device("gpu0")


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, GPU or not
    with pytest.raises(CocktailError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_supported_types():
    with pytest.raises(CocktailError, match="--device meta: profiling supports cpu and cuda"):
        resolve_device("meta", supported=("cpu", "cuda"), purpose="profiling")
    assert resolve_device("meta") == torch.device("meta")


def test_cuda_index_leaves_other_devices_alone():
    assert resolve_device("cpu", cuda_index=3) == torch.device("cpu")
