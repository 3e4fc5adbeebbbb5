"""(source, target) text pairs that install offline: the data of the ``conditional`` task.

=========== ============================================================================ ==========
name        source                                                                       pairs
=========== ============================================================================ ==========
``aclsum``  ACL papers with one-sentence aspect summaries, PyPI ``aclsum``               100 train,
            (``aclsum/dataset/{train,val,test}.jsonl``; Takeshita et al. 2024)           50 val,
                                                                                         100 test
a path      a JSONL file: one JSON object per line                                       any
=========== ============================================================================ ==========

A key names a field of each line's object; a dotted key reaches into nested objects
(``summary.outcome``), and a field holding a list of strings is joined with spaces (aclsum
stores each section as a list of sentences, e.g. ``sentences.abstract``). The ``aclsum``
package is only located, never imported (it imports ``sienna`` for reading JSON); its files
are read directly. aclsum's text is tokenized with spaces around punctuation (``20 % in MRR .``),
which ROUGE's own tokenizer ignores.

Every problem is one line naming the file, the line and the key: a missing file, a line that is
not JSON, a missing key, a value that is not text, an empty file.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

from .validation import ConfigError, jsonl_objects

ACLSUM = "aclsum"
ACLSUM_SPLITS = ("train", "val", "test")
ACLSUM_ASPECTS = ("challenge", "approach", "outcome")
ACLSUM_SECTIONS = ("abstract", "introduction", "conclusion")
INSTALL = "pip install aclsum==0.1.2"


def aclsum_file(split: str) -> Path:
    """The JSONL file of an aclsum split (``train``, ``val`` or ``test``), located without importing the package."""
    if split not in ACLSUM_SPLITS:
        raise ValueError(f"aclsum split must be one of {ACLSUM_SPLITS}; got {split!r}")
    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"task.data = 'aclsum' is not installed: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / f"{split}.jsonl"
    if not path.is_file():
        raise ConfigError(f"task.data = 'aclsum': {path} is missing; reinstall it ({INSTALL})")
    return path


def aclsum_available() -> bool:
    """Whether the aclsum package (and its data files) is installed."""
    try:
        aclsum_file("test")
    except ConfigError:
        return False
    return True


def field_text(record: dict, key: str) -> str | None:
    """The text at dotted ``key`` of ``record``: a string, or a list of strings joined with spaces;
    None when the key is missing. Raises TypeError for a value that is neither."""
    value = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    raise TypeError(f"{type(value).__name__} {json.dumps(value)[:40]}")


@functools.lru_cache(maxsize=8)
def _read(path: str, source_key: str, target_key: str, what: str, version: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    sources, targets = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise ConfigError(f"{what}: {path} cannot be read ({error.strerror})") from None
    for number, record in jsonl_objects(lines, f"{what}: {path}"):
        pair = []
        for key_name, key in (("source_key", source_key), ("target_key", target_key)):
            try:
                text = field_text(record, key)
            except TypeError as error:
                raise ConfigError(f"{what}: {path} line {number}: task.{key_name} {key!r} is not text or a list of texts; got {error}") from None
            if text is None:
                raise ConfigError(f"{what}: {path} line {number} has no key {key!r} (task.{key_name}); its keys: {sorted(record)}")
            pair.append(text)
        sources.append(pair[0])
        targets.append(pair[1])
    if not sources:
        raise ConfigError(f"{what}: {path} holds no pairs (no JSON lines)")
    return tuple(sources), tuple(targets)


def read_pairs(path: str | Path, source_key: str, target_key: str, what: str = "task.data") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (sources, targets) of a JSONL file, in file order (cached per file version).

    Parameters
    ----------
    path : str or Path
        A JSONL file: one JSON object per line; blank lines are skipped.
    source_key, target_key : str
        Dotted keys of the source and target texts in each object.
    what : str
        The config key that named the file, for error messages.

    Raises
    ------
    ConfigError
        One line naming ``what``, the file, and the line and key at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: {path} does not exist" if not path.exists() else f"{what}: {path} is not a file")
    return _read(str(path), source_key, target_key, what, path.stat().st_mtime_ns)


def load_pairs(data: str, split: str, source_key: str, target_key: str, what: str = "task.data") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sources, targets) of ``data``: ``"aclsum"`` (its ``split``) or a JSONL path (``split`` ignored)."""
    path = aclsum_file(split) if data == ACLSUM else Path(data)
    return read_pairs(path, source_key, target_key, what)
