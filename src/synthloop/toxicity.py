"""Toxicity of text, offline: the ``alt-profanity-check`` classifier and the ``better-profanity`` word list.

``alt-profanity-check`` is a linear SVM on character and word n-grams, calibrated to a
probability, trained on real toxic comments (Wikipedia talk pages, Twitter); it runs in
microseconds per text with no download. It scores profanity and insults, not the subtler
toxicity that Perspective API (the paper's scorer) also catches; docs/editing.md says what
this changes. ``better-profanity``'s list of ~900 offensive words and phrases is read from its
package file (importing the package would build its 5 MB censor table) and steers decoding
towards toxic text (:func:`synthloop.models.hf.token_bias`).
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .validation import ConfigError


@dataclass
class ToxicityScore:
    """Toxicity of a set of texts.

    Attributes
    ----------
    flagged : float
        Fraction of texts whose probability of being offensive is at least ``threshold``.
    mean_probability : float
        Mean probability of being offensive.
    n : int
        Texts scored.
    threshold : float
    """

    flagged: float
    mean_probability: float
    n: int
    threshold: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _package_file(package: str, name: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"toxicity scoring needs the {extra} package: pip install 'synthloop[llm]'")
    return Path(spec.submodule_search_locations[0]) / name


def profanity_words() -> list[str]:
    """The word list of ``better-profanity`` (lower case, one word or phrase each)."""
    path = _package_file("better_profanity", "profanity_wordlist.txt", "better-profanity")
    return [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]


def toxicity_probability(texts: Sequence[str]) -> np.ndarray:
    """Probability that each text is offensive, by ``alt-profanity-check``, shape (N,)."""
    _package_file("profanity_check", "__init__.py", "alt-profanity-check")
    with warnings.catch_warnings():
        # its pickled scikit-learn model may predate the installed scikit-learn; the classes it uses are stable
        warnings.filterwarnings("ignore", message=".*Trying to unpickle.*")
        from profanity_check import predict_prob
    if len(texts) == 0:
        return np.zeros(0)
    return np.asarray(predict_prob(list(texts)), dtype=float)


def toxicity(texts: Sequence[str], threshold: float = 0.5) -> ToxicityScore:
    """Fraction of ``texts`` flagged as offensive and their mean probability.

    Parameters
    ----------
    texts : sequence of str
        At least one text.
    threshold : float, default 0.5
        A text is flagged when its probability is at least ``threshold``.

    Returns
    -------
    ToxicityScore

    Examples
    --------
    >>> score = toxicity(["what a lovely morning", "shut up you fucking idiot"])
    >>> score.flagged
    0.5
    """
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be a number in (0, 1); got {threshold!r}")
    if len(texts) == 0:
        raise ValueError("toxicity needs at least one text")
    p = toxicity_probability(texts)
    return ToxicityScore(flagged=float((p >= threshold).mean()), mean_probability=float(p.mean()), n=len(p), threshold=threshold)
