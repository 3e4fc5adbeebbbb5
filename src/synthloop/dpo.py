"""Direct preference optimization (DPO) of a causal LM on preference pairs, with TRL: the edit's baseline.

:func:`dpo_finetune` trains a transformers causal LM on :class:`~synthloop.preferences.PreferencePair`
objects with TRL's ``DPOTrainer`` — by default one epoch of LoRA adapters (PEFT) on every linear
layer, merged back into the weights afterwards so that the result is a plain model again (the
same object, whose weights are then evaluated, edited or saved like any other).

Each pair is split into a prompt (its ``prompt`` field when both texts start with it, else their
longest common prefix) and two completions. The DPO loss of a pair is

    −log σ(β [log π(y⁺|x)/π_ref(y⁺|x) − log π(y⁻|x)/π_ref(y⁻|x)])

with the reference ``π_ref`` the model before training (for LoRA: the model with its adapters
disabled, so no second copy is held).

Randomness: the trainer, the LoRA initialization and the data order draw from torch's global
generator, which TRL seeds from ``seed``; :func:`dpo_finetune` runs inside
``torch.random.fork_rng`` so that the caller's global state is left as it was.

References
----------
Rafailov, Sharma, Mitchell, Ermon, Manning, Finn. *Direct Preference Optimization: Your Language
Model is Secretly a Reward Model* (NeurIPS 2023), Eq. 7.
Hu et al. *LoRA: Low-Rank Adaptation of Large Language Models* (ICLR 2022).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Sequence

from .validation import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DPOResult:
    """What one DPO run did.

    Attributes
    ----------
    steps : int
        Optimizer steps (``ceil(pairs / batch_size)`` per epoch).
    seconds, cpu_seconds : float
        Wall-clock and CPU time of the training (this process), merging included.
    losses : list of float
        DPO loss of every step.
    reward_accuracy : float
        Fraction of the last step's pairs whose implicit reward ranks the preferred text first.
    """

    steps: int
    seconds: float
    cpu_seconds: float
    losses: list[float] = field(default_factory=list)
    reward_accuracy: float = float("nan")


def split_prompt(preferred: str, dispreferred: str, prompt: str = "") -> tuple[str, str, str]:
    """``(prompt, preferred completion, dispreferred completion)`` of a pair.

    The pair's ``prompt`` when both texts start with it; otherwise the longest common prefix of
    the two texts, cut back to a word boundary.

    Examples
    --------
    >>> split_prompt("the cat sat", "the cat ran")
    ('the cat', ' sat', ' ran')
    """
    if prompt and preferred.startswith(prompt) and dispreferred.startswith(prompt):
        return prompt, preferred[len(prompt):], dispreferred[len(prompt):]
    n = len(os.path.commonprefix([preferred, dispreferred]))
    while n > 0 and not preferred[n - 1].isspace() and n < len(preferred) and not preferred[n].isspace():
        n -= 1
    head = preferred[:n].rstrip()
    return head, preferred[len(head):], dispreferred[len(head):]


def _check(name: str, value, lo, hi, kind=int):
    ok = isinstance(value, kind) and not isinstance(value, bool) and lo <= value <= hi
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo < value <= hi
    if not ok:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what} in {'[' if kind is int else '('}{lo}, {hi}]; got {value!r}")


def _drop_gguf_marker(model) -> None:
    """A model read from a GGUF file is de-quantized to float32 at load, but transformers still
    marks it quantized and its Trainer refuses to train it: drop the marker."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and type(quantizer).__name__ == "GgufHfQuantizer":
        model.hf_quantizer = None
        if "is_quantized" in vars(model):
            model.is_quantized = False
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config


def dpo_finetune(
    model,
    tokenizer,
    pairs: Sequence,
    *,
    beta: float = 0.1,
    learning_rate: float = 5e-4,
    batch_size: int = 8,
    epochs: int = 1,
    lora_rank: int = 8,
    max_length: int = 128,
    seed: int = 0,
):
    """Fine-tune ``model`` on ``pairs`` with DPO, in place; LoRA adapters are merged afterwards.

    Parameters
    ----------
    model : transformers causal LM
    tokenizer : its tokenizer
    pairs : sequence of PreferencePair
    beta : float, default 0.1
        Inverse temperature of the implicit reward (how far the policy may move from the reference).
    learning_rate : float, default 5e-4
        AdamW, linear decay; 5e-4 suits LoRA, full fine-tuning wants ~1e-6.
    batch_size : int, default 8
    epochs : int, default 1
    lora_rank : int, default 8
        Rank of the LoRA adapters on every linear layer of the blocks (alpha = 2 × rank);
        0 fine-tunes every weight (with a frozen copy of the model as the reference).
    max_length : int, default 128
        Prompt plus completion, in tokens.
    seed : int, default 0

    Returns
    -------
    model, DPOResult
        The trained model (the same object, LoRA merged) and what the run did.
    """
    import torch

    if not pairs:
        raise ConfigError("DPO needs at least one preference pair; got none")
    _check("beta", beta, 0, 100, float)
    _check("learning_rate", learning_rate, 0, 1, float)
    _check("batch_size", batch_size, 1, 4096)
    _check("epochs", epochs, 1, 100)
    _check("lora_rank", lora_rank, 0, 1024)
    _check("max_length", max_length, 2, 100_000)
    _check("seed", seed, 0, 2**32 - 1)
    try:
        import datasets
        from datasets import Dataset
        from transformers.trainer_callback import PrinterCallback
        from trl import DPOConfig, DPOTrainer
    except ImportError as error:
        raise ConfigError(f"DPO needs trl and peft: pip install 'synthloop[llm]' ({error})") from None

    _drop_gguf_marker(model)
    rows = [split_prompt(p.preferred, p.dispreferred, p.prompt) for p in pairs]
    data = Dataset.from_dict({"prompt": [r[0] for r in rows], "chosen": [r[1] for r in rows], "rejected": [r[2] for r in rows]})
    peft_config = None
    if lora_rank:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    padding_side = tokenizer.padding_side
    losses, accuracy = [], float("nan")
    with tempfile.TemporaryDirectory(prefix="synthloop-dpo-") as scratch, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        args = DPOConfig(
            output_dir=scratch, beta=beta, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
            num_train_epochs=epochs, max_length=max_length, seed=seed, data_seed=seed, use_cpu=True,
            activation_checkpointing=False, save_strategy="no", report_to="none", logging_steps=1,
            disable_tqdm=True, dataloader_num_workers=0, lr_scheduler_type="linear", warmup_steps=0,
        )
        start, cpu = time.perf_counter(), time.process_time()
        model.train()
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # library code does not print: no progress bars, no printed logs
        try:
            with warnings.catch_warnings():
                # TRL 1.16 calls the model's is_gradient_checkpointing, deprecated in transformers 5.24
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                reference = None if lora_rank else copy.deepcopy(model).eval()  # TRL would reload it by name
                trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config)
                trainer.remove_callback(PrinterCallback)
                trainer.train()
        finally:
            if bars:
                datasets.enable_progress_bars()
        trained = trainer.model
        if lora_rank:
            trained = trained.merge_and_unload()
        trained.eval()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        for record in trainer.state.log_history:
            if "loss" in record:
                losses.append(float(record["loss"]))
            if "rewards/accuracies" in record:
                accuracy = float(record["rewards/accuracies"])
        steps = int(trainer.state.global_step)
    tokenizer.padding_side = padding_side  # the trainer may change it
    log.info("DPO: %d pairs, %d steps, %.1f s, final loss %.4f", len(pairs), steps, seconds, losses[-1] if losses else float("nan"))
    return trained, DPOResult(steps=steps, seconds=seconds, cpu_seconds=cpu_seconds, losses=losses, reward_accuracy=accuracy)
