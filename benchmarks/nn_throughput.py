#!/usr/bin/env python
"""Benchmark: synthloop.nn against a randomly initialized transformers ``LlamaForCausalLM``.

    python benchmarks/nn_throughput.py            # both shapes, a few minutes on 2 CPU cores
    python benchmarks/nn_throughput.py --quick    # smoke test, under a minute
    python benchmarks/nn_throughput.py --threads 1  # on a shared machine
    python benchmarks/nn_throughput.py --decode-only --threads 1  # self-labelling only, under a minute
    python benchmarks/nn_throughput.py --device cuda   # on a GPU: paper shape, batch 1024, bf16 autocast

Same shape on both sides (layers, width, heads, SwiGLU hidden size, tied embeddings, RoPE, no
biases; ``synthloop.nn`` also without positions, NoPE, as the presets use), no download:

1. Training: tokens/s of AdamW steps on random sequences (batch × length) — the three models
   take turns (6 rounds at the CPU shape, 3 at the paper shape) and each keeps its fastest — and the fraction of
   this machine's measured fp32 matmul peak it reaches by the 6·N·tokens rule (N: parameters,
   tied embedding counted once; attention's T² term ignored, small at these lengths).
2. Self-labelling: answers/s of batched greedy decoding with the KV cache — 256 prompts of 24
   tokens, 24 new tokens — against ``model.generate(do_sample=False)`` of the same shape, measured
   two ways: each decoder in a fresh process of its own (how a round labels; 3 rounds of fresh
   processes, each keeping its fastest of 5 calls), and the three in one shared process taking
   turns for 7 rounds, fastest call kept — there, memory one decoder faulted in and the
   allocator kept is reused by the next, which flatters whichever runs after synthloop's cache.

With ``--device cuda`` both sides train under bfloat16 autocast with fused AdamW (what
``synthloop.nn.Trainer`` does on a GPU), at the paper's shape and batch (1,024 × 64 tokens); the
peak is the bf16 rate of 8192² matmuls; self-labelling decodes 4,096 prompts at the paper's
shape in float32 (what the self-improve task's labelling does).

Needs the ``nn`` extra and ``transformers`` (not a synthloop dependency). See
docs/benchmarks.md for the measured numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from synthloop.nn import GPT, GPTConfig, generate
from synthloop.nn.trainer import masked_loss

SHAPES = {
    "cpu": dict(n_layer=3, n_embd=96, n_head=4, mlp_ratio=4.0),  # self-improve-*-cpu presets
    "paper": dict(n_layer=6, n_embd=384, n_head=6, mlp_ratio=4.0),  # Lee et al.
}
VOCAB = 16


DEVICE = "cpu"


def clock() -> float:
    """With one torch thread (``--threads 1``) CPU seconds of this process, so that the time
    slices other jobs on a shared machine take count against neither side; else wall seconds
    (after the GPU's queued work has finished)."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


def matmul_peak(seconds: float = 2.0) -> float:
    """FLOP/s of repeated square matmuls on this machine: fp32 1024² on a CPU, bf16 8192² on a GPU."""
    n, dtype = (8192, torch.bfloat16) if DEVICE == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=DEVICE, dtype=dtype), torch.randn(n, n, device=DEVICE, dtype=dtype)
    a @ b
    count, start = 0, clock()
    while clock() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (clock() - start)


def llama(shape: dict):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=shape["n_embd"], intermediate_size=int(shape["mlp_ratio"] * shape["n_embd"]),
        num_hidden_layers=shape["n_layer"], num_attention_heads=shape["n_head"], num_key_value_heads=shape["n_head"],
        max_position_embeddings=512, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).float().to(DEVICE)


def ours(shape: dict, pos: str) -> GPT:
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=512, pos=pos, **shape), torch.Generator().manual_seed(0)).to(DEVICE)


def train_rates(entries: dict, batch: int, length: int, seconds: float, rounds: int) -> dict:
    """Tokens per second of AdamW steps for each ``name: (model, step_fn)``; the models take
    turns for ``rounds`` rounds of ``seconds / rounds`` each and each keeps its fastest round
    (load on a shared machine drifts; turns spread it over all)."""
    x = torch.randint(4, VOCAB, (batch, length), device=DEVICE)
    mask = torch.ones(batch, length - 1, dtype=torch.bool, device=DEVICE)
    cuda = DEVICE == "cuda"
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda) for name, (model, _) in entries.items()}

    def step(name):
        model, step_fn = entries[name]
        with torch.autocast(device_type=DEVICE, dtype=torch.bfloat16, enabled=cuda):
            loss = step_fn(model, x, mask)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    for name in entries:
        for _ in range(3):  # warm up
            step(name)
    best = dict.fromkeys(entries, 0.0)
    for _ in range(rounds):
        for name in entries:
            steps, start = 0, clock()
            while clock() - start < seconds / rounds:
                step(name)
                steps += 1
            best[name] = max(best[name], steps * batch * length / (clock() - start))
    return best


def ours_step(model, x, mask):
    return masked_loss(model, x, mask)


def llama_step(model, x, mask):
    return model(input_ids=x, labels=x).loss


def decoder(name: str, shape_name: str, B: int, T: int, new: int):
    """A call that decodes ``B`` prompts of ``T`` tokens, ``new`` tokens each, with decoder
    ``name`` ("hf", "rope" or "nope"), returning the number of answers."""
    shape = SHAPES[shape_name]
    prompts = torch.randint(4, VOCAB, (B, T), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    valid = torch.ones(B, T, dtype=torch.bool, device=DEVICE)
    if name == "hf":
        base = llama(shape).eval()

        def call():
            with torch.no_grad():
                out = base.generate(input_ids=prompts, attention_mask=valid.long(), do_sample=False, max_new_tokens=new,
                                    min_new_tokens=new, pad_token_id=0)
            assert out.shape[1] == T + new
            return B
    else:
        model = ours(shape, name).eval()

        def call():
            out, _ = generate(model, prompts, valid, new, eos=-1)  # eos never sampled: all `new` tokens
            assert out.shape == (B, new)
            return B
    return call


def decode_rates(fns: dict, repeats: int) -> dict:
    """Answers/s of each function, from the fastest of ``repeats`` calls; the functions take
    turns, so that a change in the machine's load hits them all alike."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()  # warm up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            answers = fn()
            best[name] = min(best[name], clock() - start)
    return {name: answers / seconds for name, seconds in best.items()}


def decode_alone(name: str, shape_name: str, B: int, T: int, new: int, repeats: int, threads: int | None, device: str) -> float:
    """Answers/s of decoder ``name`` in this (fresh) process: the fastest of ``repeats`` calls."""
    global DEVICE
    DEVICE = device
    if threads is not None:
        torch.set_num_threads(threads)
    return decode_rates({name: decoder(name, shape_name, B, T, new)}, repeats)[name]


def decode_rates_isolated(names, shape_name, B, T, new, rounds: int, repeats: int, threads) -> dict:
    """Each decoder in a fresh process of its own, as a self-improvement round labels: in one
    shared process, memory one decoder has faulted in and the allocator keeps is reused by the
    next, which speeds up whichever runs second. The decoders take turns for ``rounds`` rounds
    (each a new process) and each keeps its best."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    best = dict.fromkeys(names, 0.0)
    for _ in range(rounds):
        for name in names:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rate = pool.submit(decode_alone, name, shape_name, B, T, new, repeats, threads, DEVICE).result()
            best[name] = max(best[name], rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="short timings, cpu shape only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice); "
                        "1 on a shared machine, where spinning threads of both sides slow down by 10x or more")
    parser.add_argument("--decode-only", action="store_true", help="skip the training timings")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    cuda = DEVICE == "cuda"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seconds = 2.0 if args.quick else 8.0
    peak = matmul_peak(1.0 if args.quick else 3.0)
    where = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    print(f"# {where}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{'bf16' if cuda else 'fp32'} matmul peak {peak / 1e9:.1f} GFLOP/s; load average {os.getloadavg()[0]:.2f}; "
          f"rates per {'CPU' if torch.get_num_threads() == 1 and not cuda else 'wall'} second")
    shapes = [] if args.decode_only else ["paper"] if cuda else ["cpu"] if args.quick else ["cpu", "paper"]
    if shapes:
        print("| shape | model | params | train tokens/s | × llama | % of peak (6N) |")
        print("|---|---|---|---|---|---|")
    for name in shapes:
        shape = SHAPES[name]
        batch, length = (64, 48) if name == "cpu" else (1024, 64) if cuda else (32, 64)
        models = {"transformers Llama": (llama(shape), llama_step)}
        for pos in ("rope", "nope"):
            models[f"synthloop.nn ({pos})"] = (ours(shape, pos), ours_step)
        rates = train_rates(models, batch, length, 3 * seconds, 1 if args.quick else 6 if name == "cpu" else 3)
        base_rate = rates["transformers Llama"]
        rows = [(label, sum(p.numel() for p in model.parameters()), rates[label]) for label, (model, _) in models.items()]
        for label, n, rate in rows:
            print(f"| {name} (B={batch}, T={length}) | {label} | {n / 1e6:.2f}M | {rate:,.0f} | {rate / base_rate:.2f} | {100 * 6 * n * rate / peak:.0f}% |")

    shape_name = "paper" if cuda else "cpu"
    B, T, new = 4096 if cuda else 256, 24, 24
    names = ("hf", "rope", "nope")
    repeats = 1 if args.quick else 7
    shared = decode_rates({name: decoder(name, shape_name, B, T, new) for name in names}, repeats)
    alone = decode_rates_isolated(names, shape_name, B, T, new, 1 if args.quick else 3, 1 if args.quick else 5, args.threads)
    print(f"\n| decoding, {shape_name} shape, {B} prompts × {T} tokens, {new} new | answers/s, one process each | × generate "
          "| answers/s, one shared process | × generate |")
    print("|---|---|---|---|---|")
    labels = {"hf": "transformers `generate` (greedy, KV cache)", "rope": "synthloop.nn `generate` (rope)",
              "nope": "synthloop.nn `generate` (nope)"}
    for name in names:
        print(f"| {labels[name]} | {alone[name]:,.0f} | {alone[name] / alone['hf']:.2f} | {shared[name]:,.0f} | {shared[name] / shared['hf']:.2f} |")
    print(f"\n# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
