"""Loaders for the standard corpora, each tested on a tiny fake tree laid out like the real one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from cocktailparty.data.layouts import canonical_split
from cocktailparty.data.mixture_datasets import LibriMix, Lrs2Mix, WhamMix, Wsj0Mix, open_mixture_dataset
from cocktailparty.data.noise import NoiseFolder
from cocktailparty.data.speaker_corpus import SpeakerCorpus
from cocktailparty.core.errors import DatasetLayoutError
from tests.helpers import write_manifest

RATE = 8000


def tone(f0: float, seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A speaker-like harmonic tone with a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f0 * h * t + h) / h for h in range(1, 5))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t + seed)
    return (0.1 * x * envelope).astype(np.float32)


def write(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples.T if samples.ndim == 2 else samples, rate, subtype=subtype)
    return path




def make_manifest_corpus(root: Path, speakers: dict[str, tuple[str, str, float]], per_speaker: int = 2) -> Path:
    """Our corpus layout: ROOT/<split>/<speaker>/<utt>.flac + ROOT/manifest.csv.

    ``speakers`` maps speaker -> (person, split, f0)."""
    rows = []
    for s_index, (speaker, (person, split, f0)) in enumerate(sorted(speakers.items())):
        for u in range(per_speaker):
            uid = f"{speaker}-{u:03d}"
            seconds = 1.0 + 0.25 * ((s_index + u) % 3)
            rel = f"{split}/{speaker}/{uid}.flac"
            write(root / rel, tone(f0, seconds, seed=u))
            rows.append(dict(utterance_id=uid, path=rel, speaker=speaker, person=person, engine="fake",
                             voice=speaker, language="en", gender="f", split=split, text="hello",
                             duration=seconds, sample_rate=RATE))
    write_manifest(root, rows)
    return root


def make_wsj0mix(base: Path, splits=("tr", "cv", "tt"), num_sources: int = 2, count: int = 3,
                 seconds: float = 0.5) -> Path:
    """The wsj0-2mix layout: BASE/{tr,cv,tt}/{mix,s1,s2}/<utt1>_<g>_<utt2>_<-g>.wav, 16-bit PCM."""
    rng = np.random.default_rng(len(splits) + num_sources)
    for split in splits:
        for i in range(count):
            name = f"40{split}0{i}0a_1.{i}_22go010{i}_-1.{i}.wav"
            sources = [0.1 * rng.standard_normal(int(seconds * RATE)).astype(np.float32)
                       for _ in range(num_sources)]
            for k, s in enumerate(sources, start=1):
                write(base / split / f"s{k}" / name, s)
            write(base / split / "mix" / name, np.sum(sources, axis=0))
    return base


# --------------------------------------------------------------------------------------
# speaker-labelled corpora
# --------------------------------------------------------------------------------------


def test_manifest_corpus_groups_by_speaker_and_filters_splits(tmp_path):
    root = make_manifest_corpus(tmp_path / "corpus", {
        "mb-us1": ("us1", "train", 110.0), "flite-us1": ("us1", "train", 115.0),
        "mb-de2": ("de2", "train", 140.0), "rh-anna": ("anna", "test", 220.0),
    }, per_speaker=3)
    train = SpeakerCorpus.open(root, split="train")
    assert len(train) == 9
    assert train.speakers == ["flite-us1", "mb-de2", "mb-us1"]
    assert train.persons == ["de2", "us1"]
    assert train.speakers_of_person["us1"] == ["flite-us1", "mb-us1"]
    assert all(train[i].speaker == "mb-de2" for i in train.by_speaker["mb-de2"])
    assert train.sample_rate == RATE
    assert all(u.path.is_file() and u.split == "train" for u in train.utterances)
    # Split aliases of the other corpora mean the same split.
    assert len(SpeakerCorpus.open(root, split="tt")) == 3
    assert len(SpeakerCorpus.open(root / "manifest.csv")) == 12
    assert canonical_split("cv") == "valid" and canonical_split("dev") == "valid"


def test_manifest_errors_name_what_was_expected(tmp_path):
    root = make_manifest_corpus(tmp_path / "corpus", {"a": ("a", "train", 100.0), "b": ("b", "train", 150.0)})
    with pytest.raises(DatasetLayoutError, match="no utterances in split 'test'.*train"):
        SpeakerCorpus.open(root, split="test")
    with pytest.raises(DatasetLayoutError, match="unknown split 'holdout'"):
        SpeakerCorpus.open(root, split="holdout")

    (root / "train" / "a" / "a-000.flac").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 of 4 listed file\(s\) do not exist.*a-000.flac"):
        SpeakerCorpus.open(root)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.csv").write_text("file,who\nx.flac,a\n", encoding="utf-8")
    with pytest.raises(DatasetLayoutError, match="missing column.*utterance_id.*path.*speaker.*split"):
        SpeakerCorpus.open(bad)

    with pytest.raises(DatasetLayoutError, match="manifest.csv or a LibriSpeech-style"):
        SpeakerCorpus.open(tmp_path / "nowhere")


def test_librispeech_tree(tmp_path):
    subset = tmp_path / "LibriSpeech" / "train-clean-100"
    for spk, f0 in (("19", 120.0), ("26", 180.0), ("103", 240.0)):
        for chapter in ("198", "227"):
            for u in range(2):
                write(subset / spk / chapter / f"{spk}-{chapter}-{u:04d}.flac", tone(f0, 0.5, seed=u))
    (subset / "19" / "198" / "19-198.trans.txt").write_text("0000 HELLO\n", encoding="utf-8")
    corpus = SpeakerCorpus.open(subset)
    assert len(corpus) == 12
    assert corpus.speakers == ["103", "19", "26"]
    assert corpus.persons == corpus.speakers
    assert {u.id for u in corpus.utterances if u.speaker == "26"} == {
        "26-198-0000", "26-198-0001", "26-227-0000", "26-227-0001"}

    with pytest.raises(DatasetLayoutError, match="subset folders \\(train-clean-100\\); point at one"):
        SpeakerCorpus.open(tmp_path / "LibriSpeech")
    flat = tmp_path / "flat"
    write(flat / "19" / "19-198-0000.flac", tone(100.0, 0.2))
    with pytest.raises(DatasetLayoutError, match="at other depths.*<speaker>/<chapter>/<utterance>.flac"):
        SpeakerCorpus.open(flat)


# --------------------------------------------------------------------------------------
# wsj0-2mix / 3mix / cocktail mix output
# --------------------------------------------------------------------------------------


def test_wsj0_2mix_from_any_level_of_its_tree(tmp_path):
    top = tmp_path / "wsj0-mix" / "2speakers"
    make_wsj0mix(top / "wav8k" / "min")
    for root, kwargs in ((top / "wav8k" / "min", {}), (top, {"sample_rate": 8000}), (top / "wav8k" / "min" / "tt", {})):
        data = Wsj0Mix(root, "tt", **kwargs)
        assert len(data) == 3 and data.num_sources == 2 and data.sample_rate == RATE
        item = data[1]
        assert item["id"] == "40tt010a_1.1_22go0101_-1.1"
        assert item["mixture"].shape == (RATE // 2,) and item["sources"].shape == (2, RATE // 2)
        assert item["mixture"].dtype == torch.float32 and item["sources"].dtype == torch.float32
        # Right pairing: the mixture is the sum of *its* sources (16-bit rounding aside).
        assert torch.allclose(item["mixture"], item["sources"].sum(0), atol=2e-4)
    assert len(Wsj0Mix(top / "wav8k" / "min", "train")) == 3  # 'train' finds tr/

    batch = next(iter(DataLoader(Wsj0Mix(top / "wav8k" / "min", "cv"), batch_size=2)))
    assert batch["mixture"].shape == (2, RATE // 2) and batch["sources"].shape == (2, 2, RATE // 2)
    assert list(batch["id"]) == ["40cv000a_1.0_22go0100_-1.0", "40cv010a_1.1_22go0101_-1.1"]


def test_wsj0_3mix_and_resampling(tmp_path):
    base = make_wsj0mix(tmp_path / "3speakers" / "wav8k" / "min", splits=("tt",), num_sources=3)
    data = Wsj0Mix(base, "tt", sample_rate=16000)
    item = data[0]
    assert item["sources"].shape == (3, 8000) and item["mixture"].shape == (8000,)
    with pytest.raises(DatasetLayoutError, match="expected 4 source folders s1/ ... s4/"):
        Wsj0Mix(base, "tt", num_sources=4)


def test_wsj0_layout_errors(tmp_path):
    base = make_wsj0mix(tmp_path / "min")
    with pytest.raises(DatasetLayoutError, match="holds the splits tr, cv, tt; choose one"):
        Wsj0Mix(base)
    next((base / "tt" / "s2").iterdir()).unlink()
    with pytest.raises(DatasetLayoutError, match=r"tt/s2: 1 of the 3 mixture\(s\) in mix/ have no file"):
        Wsj0Mix(base, "tt")

    only_train = make_wsj0mix(tmp_path / "partial", splits=("tr",))
    with pytest.raises(DatasetLayoutError, match="no 'test' split folder.*tt.*found tr"):
        Wsj0Mix(only_train, "test")

    wrong = tmp_path / "wrong"
    write(wrong / "mixtures" / "a.wav", tone(100.0, 0.1))
    with pytest.raises(DatasetLayoutError, match=r"expected the wsj0-2mix layout: \{tr,cv,tt\}/.*found mixtures/"):
        Wsj0Mix(wrong, "tt")

    no_sources = tmp_path / "nosrc" / "tt"
    write(no_sources / "mix" / "a.wav", tone(100.0, 0.1))
    (no_sources / "s1").mkdir()
    with pytest.raises(DatasetLayoutError, match="expected 2 source folders"):
        Wsj0Mix(no_sources.parent, "tt", num_sources=2)

    two_rates = tmp_path / "both"
    make_wsj0mix(two_rates / "wav8k" / "min", splits=("tt",))
    make_wsj0mix(two_rates / "wav16k" / "min", splits=("tt",))
    with pytest.raises(DatasetLayoutError, match="holds wav16k, wav8k; choose one with sample_rate"):
        Wsj0Mix(two_rates, "tt")
    assert len(Wsj0Mix(two_rates, "tt", sample_rate=16000)) == 3


def test_random_crop_is_a_function_of_seed_epoch_index(tmp_path):
    base = make_wsj0mix(tmp_path / "min", splits=("tr",), seconds=2.0)
    data = Wsj0Mix(base, "tr", segment=0.5, seed=3)
    first = data[0]
    assert first["mixture"].shape == (4000,) and first["sources"].shape == (2, 4000)
    again = Wsj0Mix(base, "tr", segment=0.5, seed=3)[0]
    assert torch.equal(first["mixture"], again["mixture"])
    data.set_epoch(1)
    assert not torch.equal(data[0]["mixture"], first["mixture"])
    # The same window is cut from mixture and sources.
    whole = Wsj0Mix(base, "tr")[0]
    start = int(np.flatnonzero(np.isclose(whole["mixture"].numpy(), first["mixture"][0].item()))[0])
    assert torch.equal(whole["sources"][:, start:start + 4000], first["sources"])
    # Shorter than the segment: zero padding at the end.
    padded = Wsj0Mix(base, "tr", segment=3.0)[0]
    assert padded["mixture"].shape == (24000,) and torch.all(padded["mixture"][16000:] == 0)


# --------------------------------------------------------------------------------------
# LRS2-2Mix, WHAM!, LibriMix
# --------------------------------------------------------------------------------------


def test_lrs2_2mix_released_layout(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "lrs2_rebuild"
    base = root / "audio" / "wav16k" / "min"
    names = {"tr": ["6300370419826092098_00007_0.20712_6323221793324446979_00033_-0.20712.wav"],
             "cv": ["6330311066473698535_00011_0.53084_6339356267468615354_00010_-0.53084.wav"],
             "tt": ["6330311066473698535_00011_-1.3_6339356267468615354_00010_1.3.wav",
                    "5535415699068794046_00001_2.1_6326553828952690654_00001_-2.1.wav"]}
    for split, files in names.items():
        for name in files:
            s = [0.1 * rng.standard_normal(32000).astype(np.float32) for _ in range(2)]
            write(base / split / "s1" / name, s[0], 16000)
            write(base / split / "s2" / name, s[1], 16000)
            write(base / split / "mix" / name, s[0] + s[1], 16000)
    for root_choice in (root, root / "audio", base):
        data = Lrs2Mix(root_choice, "tt")
        assert len(data) == 2 and data.sample_rate == 16000
        assert data.ids == sorted(Path(n).stem for n in names["tt"])
        item = data[0]
        assert item["sources"].shape == (2, 32000)
        assert torch.allclose(item["mixture"], item["sources"].sum(0), atol=2e-4)
    crop = Lrs2Mix(root, "tr", segment=1.0)[0]
    assert crop["mixture"].shape == (16000,)
    with pytest.raises(DatasetLayoutError, match="LRS2-2Mix layout"):
        Lrs2Mix(tmp_path / "lrs2_rebuild" / "audio" / "wav16k", "tt")


def test_wham_mixtures_with_noise(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "wham" / "wav8k" / "min"
    for split in ("tr", "cv", "tt"):
        for i in range(2):
            name = f"01ao03{i}t_0.{i}_01ho01{i}o_-0.{i}.wav"
            s1, s2, n = (0.1 * rng.standard_normal(4000).astype(np.float32) for _ in range(3))
            for folder, x in (("s1", s1), ("s2", s2), ("noise", n), ("mix_clean", s1 + s2),
                              ("mix_both", s1 + s2 + n), ("mix_single", s1 + n)):
                write(base / split / folder / name, x, subtype="FLOAT")
    noisy = WhamMix(tmp_path / "wham", "tt", return_noise=True, sample_rate=8000)
    item = noisy[1]
    assert item["sources"].shape == (2, 4000) and item["noise"].shape == (4000,)
    assert torch.allclose(item["mixture"], item["sources"].sum(0) + item["noise"], atol=1e-6)
    clean = WhamMix(base, "tt", task="sep_clean")[1]
    assert torch.allclose(clean["mixture"], clean["sources"].sum(0), atol=1e-6)
    assert isinstance(open_mixture_dataset(tmp_path / "wham", "tt", sample_rate=8000), WhamMix)
    with pytest.raises(DatasetLayoutError, match="task 'sep_loud'"):
        WhamMix(base, "tt", task="sep_loud")
    (base / "cv" / "mix_both").rename(base / "cv" / "mixture")
    with pytest.raises(DatasetLayoutError, match="expected folders mix_both/, s1/, s2/"):
        WhamMix(base, "cv")


def _make_librimix(tmp_path: Path, n_src: int = 2) -> Path:
    """Libri2Mix/wav8k/min/{metadata,test,dev}, CSV paths absolute on another machine."""
    rng = np.random.default_rng(2)
    base = tmp_path / f"Libri{n_src}Mix" / "wav8k" / "min"
    elsewhere = Path("/data/someone/LibriMix") / f"Libri{n_src}Mix" / "wav8k" / "min"
    for subset in ("test", "dev"):
        rows = {"mix_clean": [], "mix_both": []}
        for i in range(3):
            mid = f"{1089 + i}-134686-000{i}_{121 + i}-121726-000{i}"
            sources = [0.1 * rng.standard_normal(2400 + 80 * i).astype(np.float32) for _ in range(n_src)]
            noise = 0.05 * rng.standard_normal(2400 + 80 * i).astype(np.float32)
            for k, s in enumerate(sources, start=1):
                write(base / subset / f"s{k}" / f"{mid}.wav", s, subtype="FLOAT")
            write(base / subset / "noise" / f"{mid}.wav", noise, subtype="FLOAT")
            write(base / subset / "mix_clean" / f"{mid}.wav", np.sum(sources, axis=0), subtype="FLOAT")
            write(base / subset / "mix_both" / f"{mid}.wav", np.sum(sources, axis=0) + noise, subtype="FLOAT")
            for mix_type in rows:
                row = {"mixture_ID": mid, "mixture_path": str(elsewhere / subset / mix_type / f"{mid}.wav")}
                for k in range(1, n_src + 1):
                    row[f"source_{k}_path"] = str(elsewhere / subset / f"s{k}" / f"{mid}.wav")
                if mix_type == "mix_both":
                    row["noise_path"] = str(elsewhere / subset / "noise" / f"{mid}.wav")
                row["length"] = len(noise)
                rows[mix_type].append(row)
        for mix_type, table in rows.items():
            path = base / "metadata" / f"mixture_{subset}_{mix_type}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)
    return tmp_path / f"Libri{n_src}Mix"


def test_librimix_metadata_csvs_with_moved_paths(tmp_path):
    top = _make_librimix(tmp_path)
    base = top / "wav8k" / "min"
    clean = LibriMix(top, "test", sample_rate=8000)
    assert clean.metadata == base / "metadata" / "mixture_test_mix_clean.csv"
    assert clean.ids == ["1089-134686-0000_121-121726-0000", "1090-134686-0001_122-121726-0001",
                         "1091-134686-0002_123-121726-0002"]
    item = clean[2]
    assert item["mixture"].shape == (2560,) and item["sources"].shape == (2, 2560)
    assert torch.allclose(item["mixture"], item["sources"].sum(0), atol=1e-6)

    noisy = LibriMix(base, "valid", task="sep_noisy", return_noise=True)  # 'valid' is LibriMix's dev
    item = noisy[0]
    assert torch.allclose(item["mixture"], item["sources"].sum(0) + item["noise"], atol=1e-6)
    direct = LibriMix(base / "metadata" / "mixture_dev_mix_both.csv", task="sep_noisy")
    assert direct.ids == noisy.ids
    assert isinstance(open_mixture_dataset(top, "test", sample_rate=8000), LibriMix)

    with pytest.raises(DatasetLayoutError, match=r"no mixture_train-360_mix_clean.csv \(found: mixture_dev_mix_both"):
        LibriMix(base, "train-360")
    with pytest.raises(DatasetLayoutError, match="has no noise_path column"):
        LibriMix(base, "test", return_noise=True)
    broken = base / "metadata" / "mixture_test_mix_clean.csv"
    broken.write_text("mixture_ID,mix,length\nx,y,3\n")
    with pytest.raises(DatasetLayoutError, match="missing column.*mixture_path.*source_1_path"):
        LibriMix(base, "test")
    (base / "dev" / "s2" / "1089-134686-0000_121-121726-0000.wav").unlink()
    with pytest.raises(DatasetLayoutError, match=r"line 2: .*does not exist, nor does .*dev/s2/1089"):
        LibriMix(base, "dev")


def test_libri3mix(tmp_path):
    top = _make_librimix(tmp_path, n_src=3)
    data = LibriMix(top / "wav8k" / "min", "test")
    assert data.num_sources == 3 and data[0]["sources"].shape == (3, 2400)


# --------------------------------------------------------------------------------------
# WHAM! noise
# --------------------------------------------------------------------------------------


def test_wham_noise_folder(tmp_path):
    root = tmp_path / "wham_noise"
    for split, count in (("tr", 3), ("cv", 2), ("tt", 2)):
        for i in range(count):
            stereo = np.stack([tone(50.0 + i, 0.3), tone(60.0 + i, 0.3)])
            write(root / split / f"{split}_{i:02d}.wav", stereo, 16000)
    (root / "metadata").mkdir()
    (root / "metadata" / "noise_meta_tt.csv").write_text("utterance_id\n", encoding="utf-8")
    assert [p.name for p in NoiseFolder(root, split="test")] == ["tt_00.wav", "tt_01.wav"]
    assert len(NoiseFolder(root, split="train")) == 3
    assert len(NoiseFolder(root)) == 7
    assert NoiseFolder(root, split="tt").relative_path(root / "tt" / "tt_01.wav") == "tt/tt_01.wav"
    with pytest.raises(DatasetLayoutError, match="holds no audio files.*wham_noise/\\{tr,cv,tt\\}"):
        NoiseFolder(root / "metadata")
    only_tr = tmp_path / "only_tr"
    write(only_tr / "tr" / "a.wav", tone(50.0, 0.1))
    with pytest.raises(DatasetLayoutError, match=r"has no 'test' split folder \(looked for .*; found tr\)"):
        NoiseFolder(only_tr, split="test")
