"""Pack a corpus folder small for a trip to another machine, and unpack it there.

A GPU machine that cannot synthesize speech (no TTS voices) gets its training corpus with
the code, and what travels is capped (64 MiB a call on the device machines). FLAC keeps
every bit, which a training corpus does not need on the way: ``pack`` re-encodes each sound
file as Ogg Opus at libsndfile's default bitrate and copies everything else
(``manifest.csv``, ``corpus.json``); ``unpack`` decodes them back to 16-bit FLAC under
their original names, so the manifest is valid again unchanged. Measured on the 16 kHz
``--speakers 96 --utterances 32`` corpus: 211 MB of FLAC packed into 42 MB; the round trip
keeps a waveform SNR of about 24 dB (a perceptual codec: its error is spread where the ear
misses it), well above what the separators reach. Opus only takes 8, 12, 16, 24 and 48 kHz.
``pack --sample-rate`` also resamples on the way (a 16 kHz corpus carried for an 8 kHz run),
rewriting the manifest's ``sample_rate`` column; the loaders read each file's own rate, so
nothing else changes. ``--kbps`` sets Opus's bitrate: at 8 kHz Opus codes speech as SILK,
whose round trip keeps ~13-15 dB of waveform SNR at 12-24 kbps alike.

    python scripts/corpus_transport.py pack data/corpus-synth16k gpu-data/corpus-opus
    python scripts/corpus_transport.py pack data/corpus-synth16k gpu-data/corpus-synth16k \
        --splits train,valid --per-speaker 16     # what tdanet-real16k's run carried
    python scripts/corpus_transport.py pack data/corpus-real16k gpu-data/corpus-real16k \
        --splits train,valid --sample-rate 8000 --kbps 12    # about half the size, for 8 kHz runs
    python scripts/corpus_transport.py unpack gpu-data/corpus-opus /root/data/corpus-synth16k
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cocktailparty.core import audio  # noqa: E402
from cocktailparty.data.channel_effects import OPUS_RATES, compression_level  # noqa: E402

PACKED, UNPACKED = ".opus", ".flac"


def _convert(job: tuple[Path, Path, str, int | None, int | None]) -> None:
    source, target, subtype, new_rate, kbps = job
    samples, rate = audio.read(source, channel="all")
    if new_rate is not None:
        samples, rate = audio.resample(samples, rate, new_rate), new_rate
    level = None if kbps is None else compression_level("opus", kbps, rate)
    audio.write(target, samples, rate, subtype=subtype, compression_level=level)


def selected_rows(manifest: Path, splits: set[str] | None, per_speaker: int | None) -> tuple[list[str], list[dict]]:
    """The manifest's columns and the rows kept: only ``splits`` (all if None), and at most
    the first ``per_speaker`` utterances of each speaker (all if None)."""
    with open(manifest, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows, columns = list(reader), list(reader.fieldnames or [])
    kept, seen = [], Counter()
    for row in rows:
        if splits is not None and row["split"] not in splits:
            continue
        if per_speaker is not None:
            seen[row["speaker"]] += 1
            if seen[row["speaker"]] > per_speaker:
                continue
        kept.append(row)
    return columns, kept


def transport(src: Path, dst: Path, packing: bool, jobs: int, splits: set[str] | None = None,
              per_speaker: int | None = None, sample_rate: int | None = None,
              kbps: int | None = None) -> tuple[int, int]:
    """Mirror ``src`` into ``dst``, converting sound files; returns (converted, copied).

    Packing a corpus (a folder with ``manifest.csv``) can keep only some ``splits`` and the
    first ``per_speaker`` utterances of each speaker, to fit what travels; the packed
    manifest then lists exactly the utterances packed.
    """
    if not src.is_dir():
        raise SystemExit(f"{src}: no such folder")
    from_ext, to_ext, subtype = (UNPACKED, PACKED, "OPUS") if packing else (PACKED, UNPACKED, "PCM_16")
    wanted = None
    if (sample_rate is not None or kbps is not None) and not packing:
        raise SystemExit("--sample-rate and --kbps shape the packing; unpack keeps what was packed")
    if sample_rate is not None and sample_rate not in OPUS_RATES:
        raise SystemExit(f"--sample-rate {sample_rate}: Opus takes only {', '.join(map(str, OPUS_RATES))} Hz")
    if packing and (splits or per_speaker or sample_rate) and (src / "manifest.csv").is_file():
        columns, rows = selected_rows(src / "manifest.csv", splits, per_speaker)
        wanted = {(src / row["path"]).resolve() for row in rows}
        if sample_rate is not None and "sample_rate" in columns:
            for row in rows:
                row["sample_rate"] = str(sample_rate)
        dst.mkdir(parents=True, exist_ok=True)
        with open(dst / "manifest.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    conversions, copied = [], 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or (wanted is not None and path.name == "manifest.csv" and path.parent == src):
            continue
        if wanted is not None and path.suffix.lower() == from_ext and path.resolve() not in wanted:
            continue
        target = dst / path.relative_to(src)
        if path.suffix.lower() == from_ext:
            target = target.with_suffix(to_ext)
            if not target.is_file():  # a rerun finishes an interrupted one
                conversions.append((path, target, subtype, sample_rate, kbps))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied += 1
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_convert, conversions, chunksize=16))
    return len(conversions), copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("direction", choices=("pack", "unpack"))
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--splits", help="pack: only these corpus splits, e.g. train,valid")
    parser.add_argument("--per-speaker", type=int, help="pack: at most the first N utterances of each speaker")
    parser.add_argument("--sample-rate", type=int, help="pack: resample to this rate (Hz), e.g. 8000 for an 8 kHz run")
    parser.add_argument("--kbps", type=int, help="pack: Opus bitrate (default libsndfile's, about 22-28 kbps)")
    args = parser.parse_args()
    splits = set(args.splits.split(",")) if args.splits else None
    converted, copied = transport(args.src, args.dst, args.direction == "pack", args.jobs, splits,
                                 args.per_speaker, args.sample_rate, args.kbps)
    size = sum(p.stat().st_size for p in args.dst.rglob("*") if p.is_file())
    print(f"{args.direction}: {converted} sound files converted, {copied} other files copied; "
          f"{args.dst} holds {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
