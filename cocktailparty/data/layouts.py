"""Finding a dataset's files on disk: split folders under their several names (tr/cv/tt,
train/valid/test), wsj0-2mix-style folders of mixtures, LibriMix's metadata CSVs, and the
checked CSV reading that the readers share. Errors say what layout was expected and what was
found (:class:`~cocktailparty.core.errors.DatasetLayoutError`)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..core import audio
from ..core.errors import DatasetLayoutError

PathLike = audio.PathLike


# Names each corpus uses for the same three splits; the first is ours (manifest.csv).
SPLIT_ALIASES = {
    "train": ("train", "tr", "training"),
    "valid": ("valid", "cv", "dev", "val", "validation"),
    "test": ("test", "tt", "eval"),
}


def canonical_split(split: str) -> str:
    """``'tr'``, ``'training'`` -> ``'train'``; ``'cv'``, ``'dev'`` -> ``'valid'``; ``'tt'`` -> ``'test'``."""
    key = str(split).strip().lower()
    for name, aliases in SPLIT_ALIASES.items():
        if key in aliases:
            return name
    raise DatasetLayoutError(
        f"unknown split '{split}': use train (tr), valid (cv, dev) or test (tt)"
    )


@dataclass(frozen=True)
class MixtureEntry:
    """Where the files of one fixed mixture are."""

    id: str
    mixture: Path
    sources: tuple[Path, ...]
    noise: Optional[Path] = None


def find_split_folder(
    root: PathLike,
    split: Optional[str],
    mixture_dir: str,
    layout: str,
    *,
    sample_rate: Optional[int] = None,
    mode: str = "min",
    prefixes: Iterable[str] = ("",),
) -> Path:
    """The folder holding ``<mixture_dir>/`` and ``s1/``, found from ``root`` and ``split``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such folder; expected the {layout}")
    if _is_split_folder(root, mixture_dir):
        return root
    for base in _candidate_bases(root, sample_rate, mode, prefixes):
        splits = split_subfolders(base)
        if not splits:
            continue
        names = ", ".join(p.name for p in splits.values())
        if split is None and len(splits) == 1:
            split = next(iter(splits))
        if split is None:
            raise DatasetLayoutError(f"{base}: holds the splits {names}; choose one (split=...)")
        folder = pick_split(base, splits, split, f"expected the {layout}")
        if not _is_split_folder(folder, mixture_dir):
            raise DatasetLayoutError(
                f"{folder}: expected folders {mixture_dir}/, s1/, s2/ ...; found {_listing(folder)}"
            )
        return folder
    raise DatasetLayoutError(f"{root}: expected the {layout}; found {_listing(root)}")


def folder_entries(folder: Path, mixture_dir: str, num_sources: Optional[int], with_noise: bool = False) -> list[MixtureEntry]:
    """Pair ``folder/<mixture_dir>/<name>`` with ``folder/sK/<name>`` (and ``noise/<name>``)."""
    present = 0
    while (folder / f"s{present + 1}").is_dir():
        present += 1
    if num_sources is None:
        num_sources = present
    if present < num_sources:
        raise DatasetLayoutError(
            f"{folder}: expected {num_sources} source folders s1/ ... s{num_sources}/ next to "
            f"{mixture_dir}/; found {_listing(folder)}"
        )
    mix_files = sorted(p for p in (folder / mixture_dir).iterdir()
                       if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS and not p.name.startswith("."))
    if not mix_files:
        raise DatasetLayoutError(f"{folder / mixture_dir}: holds no audio files; expected one per mixture")
    source_dirs = [folder / f"s{k + 1}" for k in range(num_sources)]
    if with_noise:
        if not (folder / "noise").is_dir():
            raise DatasetLayoutError(f"{folder}: has no noise/ folder (asked for the noise signals)")
        source_dirs.append(folder / "noise")
    for d in source_dirs:
        names = {p.name for p in d.iterdir()}
        missing = [p.name for p in mix_files if p.name not in names]
        if missing:
            raise DatasetLayoutError(
                f"{d}: {len(missing)} of the {len(mix_files)} mixture(s) in {mixture_dir}/ have no file "
                f"of the same name here (e.g. {missing[0]}); every mixture needs one per source folder"
            )
    entries = []
    for p in mix_files:
        sources = tuple(folder / f"s{k + 1}" / p.name for k in range(num_sources))
        entries.append(MixtureEntry(p.stem, p, sources, folder / "noise" / p.name if with_noise else None))
    return entries


def find_librimix_csv(root: PathLike, split: str, mix_type: str, *, sample_rate: Optional[int] = None,
                      mode: str = "min") -> Path:
    """``.../metadata/mixture_<subset>_<mix_type>.csv`` for a LibriMix root or CSV."""
    root = Path(root)
    expected = ("expected the LibriMix layout Libri2Mix/wav8k/min/metadata/mixture_<subset>_<mix_type>.csv "
                "with <subset> in train-360, train-100, dev, test")
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such file or folder; {expected}")
    metadata = None
    for base in [root] + _candidate_bases(root, sample_rate, mode, ("",)):
        if (base / "metadata").is_dir():
            metadata = base / "metadata"
            break
    if metadata is None:
        raise DatasetLayoutError(f"{root}: has no metadata/ folder; {expected}; found {_listing(root)}")
    subsets = [split]
    try:
        canon = canonical_split(split)
        subsets += {"valid": ["dev"], "test": ["test"], "train": ["train-360", "train-100"]}[canon]
    except DatasetLayoutError:
        pass
    for subset in subsets:
        candidate = metadata / f"mixture_{subset}_{mix_type}.csv"
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in metadata.glob("mixture_*.csv"))
    raise DatasetLayoutError(
        f"{metadata}: has no mixture_{split}_{mix_type}.csv "
        f"(found: {', '.join(found) if found else 'no mixture_*.csv files'}); {expected}"
    )


def librimix_entries(csv_path: Path, with_noise: bool = False) -> list[MixtureEntry]:
    """Mixtures listed in a LibriMix metadata CSV, with their paths re-rooted when moved."""
    rows = read_csv(csv_path, ("mixture_ID", "mixture_path", "source_1_path", "length"), "a LibriMix metadata CSV")
    columns = rows[0].keys() if rows else []
    num_sources = 0
    while f"source_{num_sources + 1}_path" in columns:
        num_sources += 1
    if with_noise and "noise_path" not in columns:
        raise DatasetLayoutError(f"{csv_path}: has no noise_path column (a mix_clean CSV has no noise)")
    # The CSV sits in <base>/metadata/; audio lives in <base>/<subset>/<folder>/<file>.
    base = csv_path.parent.parent
    entries = []
    for line, row in enumerate(rows, start=2):
        mixture = _librimix_path(row["mixture_path"], base, csv_path, line)
        sources = tuple(_librimix_path(row[f"source_{k + 1}_path"], base, csv_path, line)
                        for k in range(num_sources))
        noise = _librimix_path(row["noise_path"], base, csv_path, line) if with_noise else None
        entries.append(MixtureEntry(row["mixture_ID"].strip(), mixture, sources, noise))
    return entries


def _librimix_path(value: str, base: Path, csv_path: Path, line: int) -> Path:
    value = (value or "").strip()
    if not value:
        raise DatasetLayoutError(f"{csv_path}, line {line}: an empty path")
    given = Path(value.replace("\\", "/"))
    if not given.is_absolute():
        given = base / given
    if given.is_file():
        return given
    tail = Path(*given.parts[-3:])
    moved = base / tail
    if moved.is_file():
        return moved
    raise DatasetLayoutError(
        f"{csv_path}, line {line}: {value} does not exist, nor does {moved} "
        f"(the same <subset>/<folder>/<file> under the folder holding metadata/)"
    )


def _candidate_bases(root: Path, sample_rate: Optional[int], mode: str, prefixes: Iterable[str]) -> list[Path]:
    """``root``, ``root/<prefix>``, and ``root/<prefix>/wav{8,16}k/<mode>`` where they exist."""
    bases = []
    for prefix in prefixes:
        base = root / prefix if prefix else root
        if not base.is_dir():
            continue
        bases.append(base)
        rate_dirs = sorted(p for p in base.glob("wav*k") if p.is_dir())
        if sample_rate is not None:
            rate_dirs = [p for p in rate_dirs if p.name == f"wav{sample_rate // 1000}k"] or rate_dirs
        if len(rate_dirs) > 1:
            raise DatasetLayoutError(
                f"{base}: holds {', '.join(p.name for p in rate_dirs)}; choose one with sample_rate= "
                f"(or point at e.g. {rate_dirs[0] / mode})"
            )
        for rate_dir in rate_dirs:
            if (rate_dir / mode).is_dir():
                bases.append(rate_dir / mode)
            else:
                raise DatasetLayoutError(
                    f"{rate_dir}: has no '{mode}' folder (found {_listing(rate_dir)}); expected min/ or max/"
                )
    return bases


def pick_split(base: Path, splits: dict[str, Path], split: str, expected: str) -> Path:
    """The folder of ``split`` among ``base``'s split folders, or an error naming what exists."""
    canon = canonical_split(split)
    if canon not in splits:
        raise DatasetLayoutError(
            f"{base}: has no '{split}' split folder (looked for {', '.join(SPLIT_ALIASES[canon])}; "
            f"found {', '.join(p.name for p in splits.values())}); {expected}"
        )
    return splits[canon]


def split_subfolders(base: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for canon, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if (base / alias).is_dir():
                found[canon] = base / alias
                break
    return found


def _is_split_folder(folder: Path, mixture_dir: str) -> bool:
    return (folder / mixture_dir).is_dir() and (folder / "s1").is_dir()


def _listing(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "nothing readable"
    if not names:
        return "an empty folder"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_csv(path: Path, required: Sequence[str], what: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetLayoutError(f"{path}: cannot be read as {what} ({err})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetLayoutError(
            f"{path}: is not {what}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) if header else 'no header'}; expected at least {', '.join(required)})"
        )
    if not rows:
        raise DatasetLayoutError(f"{path}: has a header but no rows")
    return rows


def check_exist(paths: Sequence[Path], listed_in: Path) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetLayoutError(
            f"{listed_in}: {len(missing)} of {len(paths)} listed file(s) do not exist, e.g. {missing[0]} "
            f"(paths are relative to the manifest's folder)"
        )


def maybe_float(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def maybe_int(value) -> Optional[int]:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
