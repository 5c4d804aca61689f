"""The text the TTS corpus reads: Debian's fortunes, per language, cleaned to single-line
sentences of 40-120 characters without URLs, code or symbols."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

TEXT_MIN_CHARS, TEXT_MAX_CHARS, TEXT_MIN_WORDS = 40, 120, 6


FORTUNE_DIR = Path("/usr/share/games/fortunes")


# Top-level fortune files that are not English (fortunes-it and fortunes-br put them there).
FORTUNE_TOPLEVEL_LANGUAGE = {"brasil": "pt"}


FORTUNE_SKIP_DIRS = {"off", "cz"}  # offensive collections; cz duplicates cs through links


FORTUNE_SKIP_FILES = {"ascii-art", "art", "banner", "translate-me", "perl", "linux", "computers",
                      "asciiart", "debian", "zippy", "startrek", "itatrek"}


_BAD_TEXT = re.compile(r"--|https?:|www\.|@|\.(com|org|net|de|it|html?)\b|[\[\]{}<>|\\/_=#*~^$`+&%0-9]")


_ALLOWED_PUNCT = set(" .,;:!?'-()")


def _clean_entry(entry: str) -> list[str]:
    """Speakable sentences (40-120 chars) from one fortune, or none."""
    lines = []
    for line in entry.splitlines():
        if re.match(r"^\s*(--|—|-- )", line):  # attribution lines
            break
        lines.append(line.strip())
    text = " ".join(lines)
    text = (text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-").replace("\u2014", "-")
            .replace("\u00a0", " "))
    text = re.sub(r"[\"\u201c\u201d\u201e\u00ab\u00bb]", "", text)
    text = unicodedata.normalize("NFC", re.sub(r"\s+", " ", text).strip())
    if not text or _BAD_TEXT.search(text) or text.count(":") > 1:
        return []
    if any(not (ch.isalpha() or ch in _ALLOWED_PUNCT) for ch in text):
        return []
    if re.search(r"\b[^\W\d_]*[A-Z]{4,}", text) or re.search(r"(.)\1\1", text):
        return []  # acronyms get spelled out; "aaah"/"..." are not sentences
    sentences = re.findall(r"[^.!?]+[.!?]+", text + ("" if text[-1] in ".!?" else "."))
    out, chunk = [], ""
    for sentence in (s.strip() for s in sentences):
        candidate = f"{chunk} {sentence}".strip()
        if len(candidate) <= TEXT_MAX_CHARS:
            chunk = candidate
            continue
        if TEXT_MIN_CHARS <= len(chunk):
            out.append(chunk)
        chunk = sentence if len(sentence) <= TEXT_MAX_CHARS else ""
    if chunk:
        out.append(chunk)
    return [c for c in out if TEXT_MIN_CHARS <= len(c) <= TEXT_MAX_CHARS and len(c.split()) >= TEXT_MIN_WORDS
            and c[0].isupper()]


def _read_fortune_file(path: Path) -> str:
    data = path.read_bytes()
    for encoding in ("utf-8", "koi8-r" if "/ru/" in str(path) else "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _fortune_files(root: Path = FORTUNE_DIR) -> dict[str, list[Path]]:
    """Fortune text files by primary language tag; links resolved and de-duplicated."""
    by_language: dict[str, list[Path]] = {}
    seen = set()
    if not root.is_dir():
        return by_language

    def add(language: str, path: Path) -> None:
        real = path.resolve()
        if real in seen or not real.is_file() or path.suffix in (".dat", ".u8") or path.name.endswith("-pre"):
            return
        if path.name.split(".")[0] in FORTUNE_SKIP_FILES:
            return
        seen.add(real)
        by_language.setdefault(language, []).append(real)

    # Language folders first, so a file linked from the top level counts as its language.
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in FORTUNE_SKIP_DIRS):
        for path in sorted(sub.rglob("*")):
            if "off" not in path.relative_to(sub).parts:
                add(sub.name, path)
    for path in sorted(p for p in root.iterdir() if not p.is_dir()):
        add(FORTUNE_TOPLEVEL_LANGUAGE.get(path.name, "en"), path)
    return by_language


@lru_cache(maxsize=None)
def sentence_pools() -> dict[str, tuple[str, ...]]:
    """Cleaned sentences by primary language tag, sorted (so seeded draws are reproducible)."""
    pools = {}
    for language, files in _fortune_files().items():
        sentences = set()
        for path in files:
            for entry in re.split(r"^%\s*$", _read_fortune_file(path), flags=re.M):
                sentences.update(_clean_entry(entry))
        if len(sentences) >= 20:
            pools[language] = tuple(sorted(sentences))
    return pools
