import csv
import json

import pytest
import torch

from cocktailparty.data.datasets import MANIFEST_COLUMNS


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one thread, and CI's two cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_manifest(root, rows: list[dict], corpus_info: dict | None = None) -> None:
    """Write a corpus's manifest.csv and corpus.json, as `cocktail corpus build` lays them out."""
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (root / "corpus.json").write_text(json.dumps(corpus_info or {}), encoding="utf-8")
