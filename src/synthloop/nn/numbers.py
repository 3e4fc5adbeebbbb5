"""Numbers as tokens: Charton's P1000 and FP15 encodings, vectorized over whole arrays.

A real number is rounded to three significant digits, ``x ≈ s · m · 10^e`` with sign ``s``,
mantissa ``m`` and exponent ``e``, and written as

- ``"p1000"``: three tokens — sign (``+``/``-``), mantissa ``0…999``, exponent ``E-100…E100``;
- ``"fp15"``: one token per number holding sign, mantissa and exponent together, exponents
  ``E-8…E7`` only (2 · 900 · 16 + 1 = 28,801 tokens, about 2^15 — hence the name).

Convention: the mantissa of a nonzero number always has three digits, ``100 ≤ m ≤ 999``
(``2.3 → + 230 E-2``, ``-0.05 → - 500 E-4``), and zero is ``+ 0 E0``. This is Charton's
convention; the spec's example ``2.3 → + 23 E-1`` strips trailing zeros instead. With a fixed
mantissa width the exponent alone gives the order of magnitude, and every number has exactly
one encoding. Exponents beyond the range saturate: too small a magnitude becomes zero, too large
a one the largest representable number of its sign.

Ids: ``0…3`` are the special tokens of :data:`synthloop.nn.tokenizer.SPECIALS` (pad, bos, sep,
eos); the number tokens follow. Encoding and decoding are numpy array operations — no Python
loop per number — because encoding in Python once took a third of a CPU training run.

References
----------
Charton (2022), "Linear algebra with transformers", TMLR, Section 2 (encodings P10, P1000, B1999, FP15).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tokenizer import SPECIALS

ENCODINGS = ("p1000", "fp15")


@dataclass(frozen=True)
class NumberCodec:
    """Encode arrays of floats as token ids and back.

    Parameters
    ----------
    encoding : {"p1000", "fp15"}

    Attributes
    ----------
    tokens_per_number : int
        3 (P1000) or 1 (FP15).
    vocab_size : int
        Special tokens plus number tokens.
    emin, emax : int
        Exponent range (of the three-digit mantissa).

    Examples
    --------
    >>> codec = NumberCodec("p1000")
    >>> codec.words(codec.encode(np.array([[2.3, -0.05, 0.0]])))[0]
    ['+', '230', 'E-2', '-', '500', 'E-4', '+', '0', 'E0']
    >>> codec.decode(codec.encode(np.array([[3.14159, -1234.5]])))
    array([[    3.14, -1230.  ]])
    """

    encoding: str = "p1000"

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}; got {self.encoding!r}")

    @property
    def tokens_per_number(self) -> int:
        return 3 if self.encoding == "p1000" else 1

    @property
    def emin(self) -> int:
        return -100 if self.encoding == "p1000" else -8

    @property
    def emax(self) -> int:
        return 100 if self.encoding == "p1000" else 7

    @property
    def _exponents(self) -> int:
        return self.emax - self.emin + 1

    # P1000 layout: specials | + - | mantissa 0..999 | exponents emin..emax
    @property
    def _sign0(self) -> int:
        return len(SPECIALS)

    @property
    def _mant0(self) -> int:
        return len(SPECIALS) + 2

    @property
    def _exp0(self) -> int:
        return len(SPECIALS) + 2 + 1000

    @property
    def vocab_size(self) -> int:
        if self.encoding == "p1000":
            return self._exp0 + self._exponents
        return len(SPECIALS) + 1 + 2 * 900 * self._exponents  # zero, then (sign, mantissa, exponent)

    def quantize(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sign (0 for +, 1 for -), mantissa and exponent of ``values`` rounded to three
        significant digits, each an int array of the shape of ``values``; zero is ``(0, 0, 0)``.

        Non-finite values raise ``ValueError``: they have no encoding."""
        x = np.asarray(values, dtype=np.float64)
        if not np.isfinite(x).all():
            raise ValueError("cannot encode NaN or infinite numbers")
        a = np.abs(x)
        nonzero = a > 0
        safe = np.where(nonzero, a, 1.0)
        e = np.floor(np.log10(safe)).astype(np.int64) - 2
        m = np.rint(safe / 10.0 ** e)
        # log10 just below a power of ten can round up, and 999.5 rounds to 1000: both leave the
        # mantissa outside [100, 999]; one step of the exponent puts it back.
        e = e - (m < 100) + (m >= 1000)
        m = np.rint(safe / 10.0 ** e).astype(np.int64)
        underflow = e < self.emin
        overflow = e > self.emax
        m = np.where(overflow, 999, m)
        e = np.clip(e, self.emin, self.emax)
        zero = ~nonzero | underflow
        sign = np.where(zero, 0, (x < 0).astype(np.int64))
        return sign, np.where(zero, 0, m), np.where(zero, 0, e)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Token ids (N, m · tokens_per_number) of floats ``values`` (N, m), numbers in order."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"values must be 2-D (N, m); got shape {values.shape}")
        sign, m, e = self.quantize(values)  # each (N, m)
        N, k = values.shape
        if self.encoding == "p1000":
            ids = np.stack([self._sign0 + sign, self._mant0 + m, self._exp0 + e - self.emin], axis=-1)  # (N, m, 3)
            return ids.reshape(N, 3 * k)
        index = (sign * 900 + (m - 100)) * self._exponents + (e - self.emin)
        return np.where(m == 0, len(SPECIALS), len(SPECIALS) + 1 + index)

    def decode(self, ids: np.ndarray, count: int | None = None) -> np.ndarray:
        """Floats (N, count) of token ids (N, T); a number whose tokens are not a well-formed
        number (a special token, a mantissa where a sign belongs, a nonzero mantissa below
        100 …) is NaN. ``count`` defaults to ``T // tokens_per_number``; missing tokens are NaN."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"ids must be 2-D (N, T); got shape {ids.shape}")
        t = self.tokens_per_number
        count = ids.shape[1] // t if count is None else count
        need = count * t
        if ids.shape[1] < need:  # too short: pad with a token that is never a number
            ids = np.concatenate([ids, np.zeros((ids.shape[0], need - ids.shape[1]), dtype=np.int64)], axis=1)
        ids = ids[:, :need].reshape(ids.shape[0], count, t)
        if self.encoding == "p1000":
            s, m, e = ids[..., 0] - self._sign0, ids[..., 1] - self._mant0, ids[..., 2] - self._exp0
            ok = (s >= 0) & (s < 2) & (m >= 0) & (m < 1000) & (e >= 0) & (e < self._exponents)
            ok &= (m >= 100) | ((m == 0) & (s == 0) & (e == -self.emin))  # canonical form only
            e = e + self.emin
        else:
            i = ids[..., 0] - len(SPECIALS) - 1
            zero = i == -1
            ok = zero | ((i >= 0) & (i < 2 * 900 * self._exponents))
            i = np.where(ok & ~zero, i, 0)
            s, rest = np.divmod(i, 900 * self._exponents)
            m, e = np.divmod(rest, self._exponents)
            m, e = np.where(zero, 0, m + 100), np.where(zero, 0, e + self.emin)
        # m / 10^-e is the double nearest to the decimal (m · 10^e is not, for e < 0)
        e = np.where(ok, e, 0)  # malformed tokens may hold any exponent; their value is NaN anyway
        scale = 10.0 ** np.abs(e).astype(np.float64)
        value = np.where(s == 1, -1.0, 1.0) * np.where(e >= 0, m * scale, m / scale)
        return np.where(ok, value, np.nan)

    def words(self, ids: np.ndarray) -> list[list[str]]:
        """The tokens of ``ids`` (N, T) as readable words, for logs and docs (a Python loop: not
        for training data)."""
        out = []
        for row in np.asarray(ids):
            words = []
            for i in row.tolist():
                if i < len(SPECIALS):
                    words.append(SPECIALS[i])
                elif self.encoding == "p1000":
                    if i < self._mant0:
                        words.append("+-"[i - self._sign0])
                    elif i < self._exp0:
                        words.append(str(i - self._mant0))
                    else:
                        words.append(f"E{i - self._exp0 + self.emin}")
                else:
                    v = self.decode(np.array([[i]]))[0, 0]
                    words.append(f"{v:+.2e}")
            out.append(words)
        return out
