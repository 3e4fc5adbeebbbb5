"""Seeds for replicates: one ``numpy.random.Generator`` per replicate and stream.

Replicates are an array axis, but each replicate draws from its own generator so that a run
with ``R`` replicates reproduces, number for number, the first ``R`` replicates of a larger
run. Streams separate the uses of randomness within a replicate: the real data are drawn from
a stream shared by every workflow (so all workflows start from the same generation 0), while
each workflow draws synthetic data from a stream keyed by its own name, so adding or removing
a workflow from an experiment changes none of the others' numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

REAL_STREAM = "real"


def stream_key(stream: str) -> int:
    """A stable integer for a stream name (same on every machine and Python version)."""
    return zlib.crc32(stream.encode())


def replicate_generators(seed: int, replicates: int, stream: str) -> list[np.random.Generator]:
    """One generator per replicate ``r``, seeded from ``SeedSequence(seed, spawn_key=(r, stream))``."""
    key = stream_key(stream)
    return [
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(r, key))))
        for r in range(replicates)
    ]


def standard_normal(rngs: Sequence[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal draws of ``shape`` per replicate, ``(R, *shape)``, written in place."""
    out = np.empty((len(rngs), *shape))
    for rng, row in zip(rngs, out):
        rng.standard_normal(out=row)
    return out


def generator_states(rngs: Sequence[np.random.Generator]) -> list[dict]:
    """The bit-generator states, for checkpoints."""
    return [rng.bit_generator.state for rng in rngs]


def restore_generators(states: Sequence[dict]) -> list[np.random.Generator]:
    """Generators continuing exactly where :func:`generator_states` left them."""
    rngs = []
    for state in states:
        bit_generator = np.random.PCG64()
        bit_generator.state = state
        rngs.append(np.random.Generator(bit_generator))
    return rngs
