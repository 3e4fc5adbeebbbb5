"""Algorithmic problems of Lee et al. (2025): instance generators by difficulty, exact-match truth.

Each problem draws prompts of a given difficulty (digits, length, hops) and knows the correct
answer of any prompt, as plain strings over a small alphabet:

===================  ==============================  ==============================  =========
problem              prompt (difficulty ``n``)        answer                          length
===================  ==============================  ==============================  =========
reverse-addition     ``a+b``, ``n`` digits each,      ``a+b``, least significant       ``n+1``
                     least significant digit first     digit first, zero-padded
addition             ``a+b``, ``n`` digits each       ``a+b``, zero-padded             ``n+1``
copy                 ``n`` random digits              the same digits                  ``n``
reverse              ``n`` random digits              the digits reversed              ``n``
multiplication       ``a*b``, ``n`` digits each,      ``a·b``, least significant       ``2n``
                     least significant digit first     digit first, zero-padded
maze                 a tree's edges ``ab,bc,…``,      the path's nodes, ``s…t``        ``n+1``
                     then ``|st``: a path of ``n``
                     hops from ``s`` to ``t``
===================  ==============================  ==============================  =========

Addition's round-0 data may also pair operands of different lengths (``sample_lengths``; the
difficulty is then the longer one's), as the paper's code does.

Zero padding to a fixed answer length is the paper's: it makes the answer's length a function
of the prompt, so a length filter can reject malformed labels. Multiplication is written
directly (reversed digits) rather than in the paper's chain-of-thought format. Mazes are trees
(so the shortest path is unique) over ``max(nodes, n + 1)`` nodes named by letters.

Everything here is numpy and strings; no torch.
"""

from __future__ import annotations

import string
from abc import ABC, abstractmethod

import numpy as np

DIGITS = "0123456789"
NODE_NAMES = string.ascii_lowercase + string.ascii_uppercase


def _numbers(rng: np.random.Generator, digits: int, n: int) -> list[int]:
    """``n`` integers of exactly ``digits`` digits (0–9 for one digit)."""
    if digits == 1:
        return [int(v) for v in rng.integers(0, 10, n)]
    # Python ints: difficulties beyond 18 digits exceed int64.
    heads = rng.integers(1, 10, n)
    tails = rng.integers(0, 10, (n, digits - 1))
    return [int(str(h) + "".join(map(str, t))) for h, t in zip(heads, tails)]


class Problem(ABC):
    """A family of prompts indexed by difficulty, with exact answers."""

    name: str
    #: characters of prompts and answers (the tokenizer's alphabet)
    alphabet: str
    #: characters an answer may contain (the format filter)
    answer_alphabet: str = DIGITS

    @abstractmethod
    def sample(self, difficulty: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` prompts of ``difficulty``, an object array of str."""

    @abstractmethod
    def solve(self, prompt: str) -> str:
        """The correct answer of ``prompt``."""

    @abstractmethod
    def answer_length(self, difficulty: int) -> int:
        """Characters of every answer at ``difficulty``."""

    def solve_all(self, prompts: np.ndarray) -> np.ndarray:
        return np.array([self.solve(p) for p in prompts], dtype=object)

    def well_formed(self, answers: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
        """The length / format filter: each answer has the expected length and only answer
        characters, shape ``answers.shape`` bool."""
        allowed = set(self.answer_alphabet)
        return np.array([
            len(a) == self.answer_length(int(d)) and set(a) <= allowed for a, d in zip(answers.ravel(), np.broadcast_to(difficulty, answers.shape).ravel())
        ], dtype=bool).reshape(answers.shape)

    def corrupt(self, answer: str, rng: np.random.Generator) -> str:
        """``answer`` with one character replaced by a different answer character (same length),
        for error-avalanche experiments."""
        if not answer:
            return self.answer_alphabet[0]
        i = int(rng.integers(len(answer)))
        choices = [c for c in self.answer_alphabet if c != answer[i]]
        return answer[:i] + choices[int(rng.integers(len(choices)))] + answer[i + 1 :]

    def max_prompt_length(self, difficulty: int) -> int:
        return len(self.sample(difficulty, 1, np.random.default_rng(0))[0])


class Addition(Problem):
    """``n``-digit addition; ``reverse=True`` writes operands and sum least significant digit first."""

    alphabet = DIGITS + "+"

    def __init__(self, reverse: bool):
        self.reverse = reverse
        self.name = "reverse-addition" if reverse else "addition"

    def _write(self, value: int, width: int | None = None) -> str:
        text = str(value) if width is None else str(value).zfill(width)
        return text[::-1] if self.reverse else text

    def _read(self, text: str) -> int:
        return int(text[::-1] if self.reverse else text)

    def sample(self, difficulty, n, rng):
        a, b = _numbers(rng, difficulty, n), _numbers(rng, difficulty, n)
        return np.array([f"{self._write(x)}+{self._write(y)}" for x, y in zip(a, b)], dtype=object)

    def sample_lengths(self, digits_a: np.ndarray, digits_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One prompt per row with ``digits_a[i]`` and ``digits_b[i]`` digits; its difficulty is
        the longer operand's (the answer has ``max + 1`` digits). Lee et al.'s code draws the
        round-0 data this way, each operand's length on its own."""
        a = np.empty(len(digits_a), dtype=object)
        b = np.empty(len(digits_b), dtype=object)
        for digits in np.unique(np.concatenate([digits_a, digits_b])):
            at_a, at_b = digits_a == digits, digits_b == digits
            a[at_a] = _numbers(rng, int(digits), int(at_a.sum()))
            b[at_b] = _numbers(rng, int(digits), int(at_b.sum()))
        return np.array([f"{self._write(x)}+{self._write(y)}" for x, y in zip(a, b)], dtype=object)

    def solve(self, prompt):
        left, right = prompt.split("+")
        width = max(len(left), len(right)) + 1
        return self._write(self._read(left) + self._read(right), width)

    def answer_length(self, difficulty):
        return difficulty + 1


class Multiplication(Problem):
    """``n × n``-digit multiplication, digits reversed, product zero-padded to ``2n`` digits."""

    name = "multiplication"
    alphabet = DIGITS + "*"

    def sample(self, difficulty, n, rng):
        a, b = _numbers(rng, difficulty, n), _numbers(rng, difficulty, n)
        return np.array([f"{str(x)[::-1]}*{str(y)[::-1]}" for x, y in zip(a, b)], dtype=object)

    def solve(self, prompt):
        left, right = prompt.split("*")
        width = len(left) + len(right)
        return str(int(left[::-1]) * int(right[::-1])).zfill(width)[::-1]

    def answer_length(self, difficulty):
        return 2 * difficulty


class Copy(Problem):
    """Copy (or, with ``reverse=True``, reverse) a string of ``n`` random digits."""

    alphabet = DIGITS

    def __init__(self, reverse: bool):
        self.reverse = reverse
        self.name = "reverse" if reverse else "copy"

    def sample(self, difficulty, n, rng):
        return np.array(["".join(map(str, row)) for row in rng.integers(0, 10, (n, difficulty))], dtype=object)

    def solve(self, prompt):
        return prompt[::-1] if self.reverse else prompt

    def answer_length(self, difficulty):
        return difficulty


class Maze(Problem):
    """Shortest path of ``n`` hops in a random tree, given as its edges.

    Parameters
    ----------
    nodes : int
        Nodes per maze (at least ``n + 1``; at most 52, one letter each).
    """

    name = "maze"
    alphabet = NODE_NAMES + ",|"
    answer_alphabet = NODE_NAMES

    def __init__(self, nodes: int = 30):
        if not 2 <= nodes <= len(NODE_NAMES):
            raise ValueError(f"nodes must be an integer in [2, {len(NODE_NAMES)}]; got {nodes}")
        self.nodes = nodes

    def _one(self, hops: int, rng) -> str:
        count = max(self.nodes, hops + 1)
        if count > len(NODE_NAMES):
            raise ValueError(f"a maze of {hops} hops needs {hops + 1} nodes; at most {len(NODE_NAMES)} are named")
        names = np.array(list(NODE_NAMES))[rng.permutation(len(NODE_NAMES))[:count]]
        # nodes 0..hops form the path; every other node hangs off a random earlier node
        edges = [(i, i + 1) for i in range(hops)]
        edges += [(int(rng.integers(j)), j) for j in range(hops + 1, count)]
        edges = [(a, b) if rng.random() < 0.5 else (b, a) for a, b in edges]
        order = rng.permutation(len(edges))
        listed = ",".join(names[edges[i][0]] + names[edges[i][1]] for i in order)
        return f"{listed}|{names[0]}{names[hops]}"

    def sample(self, difficulty, n, rng):
        return np.array([self._one(difficulty, rng) for _ in range(n)], dtype=object)

    def solve(self, prompt):
        listed, ends = prompt.split("|")
        start, goal = ends[0], ends[1]
        neighbours: dict[str, list[str]] = {}
        for edge in listed.split(","):
            neighbours.setdefault(edge[0], []).append(edge[1])
            neighbours.setdefault(edge[1], []).append(edge[0])
        parent, frontier = {start: None}, [start]
        while frontier and goal not in parent:  # breadth-first search
            following = []
            for v in frontier:
                for m in neighbours[v]:
                    if m not in parent:
                        parent[m] = v
                        following.append(m)
            frontier = following
        path, node = [], goal
        while node is not None:
            path.append(node)
            node = parent[node]
        return "".join(reversed(path))

    def answer_length(self, difficulty):
        return difficulty + 1


PROBLEMS = ("reverse-addition", "addition", "copy", "reverse", "multiplication", "maze")


def make_problem(name: str, maze_nodes: int = 30) -> Problem:
    """The problem named ``name`` (one of :data:`PROBLEMS`)."""
    if name == "reverse-addition":
        return Addition(reverse=True)
    if name == "addition":
        return Addition(reverse=False)
    if name in ("copy", "reverse"):
        return Copy(reverse=name == "reverse")
    if name == "multiplication":
        return Multiplication()
    if name == "maze":
        return Maze(maze_nodes)
    raise ValueError(f"problem must be one of {list(PROBLEMS)}; got {name!r}")


def accuracy_by_difficulty(predicted: np.ndarray, truth: np.ndarray, difficulty: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Exact-match accuracy of ``predicted`` at each difficulty in ``levels``, shape ``(len(levels),)``
    (NaN where a level has no example)."""
    correct = predicted == truth
    out = np.full(len(levels), np.nan)
    for i, level in enumerate(levels):
        at = difficulty == level
        if at.any():
            out[i] = correct[at].mean()
    return out
