"""SmolLM2-135M on CPU through synthloop.models.hf: generation tokens/s, scoring texts/s, fine-tuning examples/s (LoRA and full).

    python benchmarks/llm_throughput.py THREADS

Prints one JSON line with the 1-minute load average before and after. Prompts and texts are King
James verses (corpus ``bible``); 16 prompts × 32 new tokens sampled in one batch over the whole
vocabulary; fine-tuning: batches of 8 verses (truncated to 48 tokens), 3 LoRA steps (rank 8 on all
projections) then 2 full steps.
"""

import json
import os
import sys
import time

import torch

from synthloop.models.hf import CausalLM, LoRA
from synthloop.preferences import corpus_sentences

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
torch.set_num_threads(threads)
out = {"threads": threads, "load1_before": os.getloadavg()[0]}
start = time.perf_counter()
lm = CausalLM.load("smollm2")
out["load_seconds"] = time.perf_counter() - start
texts = corpus_sentences("bible")[:64]
prompts = [" ".join(t.split()[:6]) for t in texts[:16]]
g = torch.Generator().manual_seed(0)
start = time.perf_counter()
samples = lm.generate(prompts, g, max_new_tokens=32, top_k=0, batch_size=16)
seconds = time.perf_counter() - start
out["generate_tokens_per_s"] = sum(len(lm.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in samples) / seconds
start = time.perf_counter()
lm.score(texts[:32], max_length=64)
out["score_texts_per_s"] = 32 / (time.perf_counter() - start)
result = lm.fine_tune(texts, g, steps=3, batch_size=8, lr=1e-3, max_length=48, lora=LoRA(rank=8))
out["lora_examples_per_s"], out["lora_tokens_per_s"], out["lora_trainable"] = result.examples_per_s, result.tokens_per_s, result.trainable
lm.merge_lora()
result = lm.fine_tune(texts, g, steps=2, batch_size=8, lr=1e-5, max_length=48)
out["full_examples_per_s"], out["full_tokens_per_s"], out["full_trainable"] = result.examples_per_s, result.tokens_per_s, result.trainable
out["load1_after"] = os.getloadavg()[0]
print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
