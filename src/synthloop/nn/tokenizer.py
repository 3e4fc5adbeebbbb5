"""Character-level tokenizer with special tokens, padding and the answer-only loss mask.

A training example is ``<bos> prompt <sep> answer <eos>``, one token per character of the
task's alphabet. The model learns to continue a prompt, so the loss covers only the targets
that predict the answer and its ``<eos>``; the prompt and padding contribute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>")


@dataclass
class Batch:
    """Tokenized examples, right-padded.

    Attributes
    ----------
    tokens : LongTensor of shape (N, T)
        ``<bos> prompt <sep> answer <eos> <pad>…``.
    loss_mask : BoolTensor of shape (N, T - 1)
        True where target ``tokens[:, 1:]`` is part of the answer or its ``<eos>``.
    """

    tokens: torch.Tensor
    loss_mask: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]


class CharTokenizer:
    """One token per character of ``alphabet`` plus the special tokens ``SPECIALS``.

    Parameters
    ----------
    alphabet : str
        The task's characters (digits, ``+``, ``,`` …); each must be distinct.

    Examples
    --------
    >>> tok = CharTokenizer("0123456789+")
    >>> tok.decode(tok.encode_prompt("12+3")[1:])
    '12+3'
    """

    def __init__(self, alphabet: str):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet has repeated characters: {alphabet!r}")
        self.alphabet = alphabet
        self.pad, self.bos, self.sep, self.eos = range(len(SPECIALS))
        self._ids = {c: i + len(SPECIALS) for i, c in enumerate(alphabet)}
        self._chars = np.array(list(SPECIALS) + list(alphabet), dtype=object)

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the alphabet {self.alphabet!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of ``ids`` up to the first ``<eos>``; other special tokens are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i >= len(SPECIALS):
                out.append(self._chars[i])
        return "".join(out)

    def encode_prompt(self, prompt: str) -> list[int]:
        """``<bos> prompt <sep>`` — what the model continues with the answer."""
        return [self.bos, *self.encode(prompt), self.sep]

    def encode_example(self, prompt: str, answer: str) -> tuple[list[int], int]:
        """Tokens of a whole example and the length of its prompt part (``<bos> … <sep>``)."""
        head = self.encode_prompt(prompt)
        return head + self.encode(answer) + [self.eos], len(head)

    def _codes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of all ``texts`` concatenated, and each text's length — one vectorized
        lookup instead of a Python loop per character (a round tokenizes its whole pool)."""
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        table = np.full(max(int(points.max(initial=0)), max(map(ord, self.alphabet))) + 1, -1, dtype=np.int64)
        table[[ord(c) for c in self.alphabet]] = np.arange(len(SPECIALS), self.vocab_size)
        ids = table[points]
        if (ids < 0).any():
            bad = chr(int(points[np.argmax(ids < 0)]))
            raise ValueError(f"character {bad!r} is not in the alphabet {self.alphabet!r}")
        return ids, lengths

    @staticmethod
    def _place(tokens: np.ndarray, ids: np.ndarray, lengths: np.ndarray, first: np.ndarray) -> None:
        """Write text ``i`` (``lengths[i]`` ids of the concatenated ``ids``) into row ``i``
        from column ``first[i]`` on."""
        rows = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.cumsum(lengths) - lengths
        tokens[rows, np.repeat(first - starts, lengths) + np.arange(len(ids))] = ids

    def batch(self, prompts: Sequence[str], answers: Sequence[str]) -> Batch:
        """Right-padded tokens and the answer-only loss mask of ``len(prompts)`` examples."""
        if len(prompts) != len(answers):
            raise ValueError(f"batch needs one answer per prompt; got {len(prompts)} prompts and {len(answers)} answers")
        p_ids, p_len = self._codes(prompts)
        a_ids, a_len = self._codes(answers)
        N = len(p_len)
        length = p_len + a_len + 3  # <bos> prompt <sep> answer <eos>
        T = int(length.max(initial=3))
        tokens = np.full((N, T), self.pad, dtype=np.int64)
        tokens[:, 0] = self.bos
        self._place(tokens, p_ids, p_len, np.ones(N, dtype=np.int64))
        tokens[np.arange(N), p_len + 1] = self.sep
        self._place(tokens, a_ids, a_len, p_len + 2)
        tokens[np.arange(N), length - 1] = self.eos
        # targets tokens[head:len] (answer and <eos>), head = prompt length + 2
        column = np.arange(T - 1)
        mask = (column >= (p_len + 1)[:, None]) & (column < (length - 1)[:, None])
        return Batch(torch.from_numpy(tokens), torch.from_numpy(mask))

    def prompt_batch(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt tokens (B, T) and their validity mask (B, T), for decoding."""
        ids, lengths = self._codes(prompts)
        N = len(lengths)
        T = int(lengths.max(initial=0)) + 2  # <bos> prompt <sep>
        first = T - lengths - 2
        tokens = np.full((N, T), self.pad, dtype=np.int64)
        tokens[np.arange(N), first] = self.bos
        self._place(tokens, ids, lengths, first + 1)
        tokens[:, T - 1] = self.sep
        valid = np.arange(T) >= first[:, None]
        return torch.from_numpy(tokens), torch.from_numpy(valid)
