"""ROUGE between generated and reference texts (Lin 2004), through Google's ``rouge-score``.

ROUGE-1 and ROUGE-2 are the F-measures of unigram and bigram overlap, ROUGE-L that of the
longest common subsequence of tokens. ``rouge-score`` lower-cases, keeps ``[a-z0-9]`` runs as
tokens and, here, stems them with the Porter stemmer (as most summarization papers report).
Its sentence splitting (``split_summaries``, needed only for ROUGE-Lsum) stays off: it needs
NLTK's ``punkt`` data, which is not available offline.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .validation import ConfigError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@functools.lru_cache(maxsize=2)
def _scorer(stem: bool):
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ConfigError("ROUGE needs the rouge-score package: pip install 'synthloop[llm]' (rouge-score==0.1.2)") from None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stem, split_summaries=False)


def rouge_available() -> bool:
    """Whether ``rouge-score`` is installed."""
    import importlib.util

    return importlib.util.find_spec("rouge_score") is not None


def rouge(predictions: Sequence[str], references: Sequence[str], stem: bool = True) -> dict[str, np.ndarray]:
    """Per-pair ROUGE-1, ROUGE-2 and ROUGE-L F-measures.

    Parameters
    ----------
    predictions : sequence of str
        Generated texts.
    references : sequence of str
        One reference per prediction.
    stem : bool, default True
        Porter-stem tokens before matching.

    Returns
    -------
    dict of str to ndarray of shape (n,)
        ``rouge1``, ``rouge2``, ``rougeL``, each in [0, 1]; 0 where either text has no token.

    Notes
    -----
    With ``m`` the n-grams (or LCS tokens) the two texts share, ``P = m / |prediction|``,
    ``R = m / |reference|`` and ``F = 2PR / (P + R)``; n-grams are counted with multiplicity.

    References
    ----------
    Lin (2004), "ROUGE: A package for automatic evaluation of summaries", Sections 2 (ROUGE-N)
    and 3 (ROUGE-L).

    Examples
    --------
    >>> scores = rouge(["the cat is on the mat"], ["the cat sat on the mat"])
    >>> [round(float(scores[k][0]), 4) for k in ("rouge1", "rouge2", "rougeL")]
    [0.8333, 0.6, 0.8333]
    """
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references must have the same length; got {len(predictions)} and {len(references)}")
    scorer = _scorer(bool(stem))
    out = {key: np.zeros(len(predictions)) for key in ROUGE_TYPES}
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        scores = scorer.score(reference, prediction)  # rouge-score takes (target, prediction)
        for key in ROUGE_TYPES:
            out[key][i] = scores[key].fmeasure
    return out
