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

    def batch(self, prompts: Sequence[str], answers: Sequence[str]) -> Batch:
        """Right-padded tokens and the answer-only loss mask of ``len(prompts)`` examples."""
        encoded = [self.encode_example(p, a) for p, a in zip(prompts, answers, strict=True)]
        T = max(len(e) for e, _ in encoded)
        tokens = torch.full((len(encoded), T), self.pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), T - 1), dtype=torch.bool)
        for i, (ids, head) in enumerate(encoded):
            tokens[i, : len(ids)] = torch.tensor(ids)
            mask[i, head - 1 : len(ids) - 1] = True  # targets tokens[head:len]: answer and <eos>
        return Batch(tokens, mask)

    def prompt_batch(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt tokens (B, T) and their validity mask (B, T), for decoding."""
        encoded = [self.encode_prompt(p) for p in prompts]
        T = max(len(e) for e in encoded)
        tokens = torch.full((len(encoded), T), self.pad, dtype=torch.long)
        valid = torch.zeros((len(encoded), T), dtype=torch.bool)
        for i, ids in enumerate(encoded):
            tokens[i, T - len(ids) :] = torch.tensor(ids)
            valid[i, T - len(ids) :] = True
        return tokens, valid
