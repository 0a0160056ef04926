"""The reference points, without the worker: a tuned transformers loop and one raw vLLM engine.

Both take token ids that are already made (each document one window: [CLS] ... [SEP]) and
keep only the argmax per token, as the anchors in the project's notes did.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


def hf_loop(model_dir: str, ids: list[list[int]], *, batch_sizes: list[int], repeats: int,
            device: str = "cuda") -> list[dict[str, Any]]:
    """transformers bf16, SDPA, length-sorted padded batches; one row per batch size."""
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").to(device).eval()
    lengths = [len(i) for i in ids]
    order = sorted(range(len(ids)), key=lambda i: lengths[i])

    def one_pass(batch: int) -> None:
        with torch.inference_mode():
            for start in range(0, len(order), batch):
                index = order[start : start + batch]
                width = max(lengths[i] for i in index)
                array = np.zeros((len(index), width), dtype=np.int64)
                mask = np.zeros((len(index), width), dtype=np.int64)
                for row, i in enumerate(index):
                    array[row, : lengths[i]] = ids[i]
                    mask[row, : lengths[i]] = 1
                x, m = torch.from_numpy(array), torch.from_numpy(mask)
                if device == "cuda":
                    x = x.pin_memory().to(device, non_blocking=True)
                    m = m.pin_memory().to(device, non_blocking=True)
                model(input_ids=x, attention_mask=m).logits.argmax(-1).cpu()
        if device == "cuda":
            torch.cuda.synchronize()

    rows = []
    for batch in batch_sizes:
        one_pass(batch)  # warm-up: allocator, kernels
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            one_pass(batch)
            times.append(time.perf_counter() - started)
        rows.append({"batch_size": batch, "times": times})
    return rows


def vllm_one_engine(model_dir: str, ids: list[list[int]], texts: list[str], *, repeats: int,
                    max_num_batched_tokens: int, max_num_seqs: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``LLM`` in this process: ``LLM.encode`` over token ids, then over raw texts."""
    import importlib.util

    if importlib.util.find_spec("flashinfer") is None:
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    from vllm import LLM  # type: ignore[import-not-found]
    from vllm.inputs import TokensPrompt  # type: ignore[import-not-found]

    started = time.perf_counter()
    llm = LLM(model=model_dir, runner="pooling", dtype="bfloat16", enforce_eager=True, gpu_memory_utilization=0.8,
              max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, seed=0)
    info = {"engine_start_s": time.perf_counter() - started}
    prompts = [TokensPrompt(prompt_token_ids=i) for i in ids]
    llm.encode(prompts[:2000], pooling_task="token_classify", use_tqdm=False)
    rows = []
    for name, inputs in (("token ids", prompts), ("raw text", texts)):
        llm.encode(inputs[:200], pooling_task="token_classify", use_tqdm=False)
        times = []
        for _ in range(repeats if name == "token ids" else 1):
            t0 = time.perf_counter()
            outputs = llm.encode(inputs, pooling_task="token_classify", use_tqdm=False)
            _ = [o.outputs.data.argmax(-1) for o in outputs]
            times.append(time.perf_counter() - t0)
        if len(outputs) != len(inputs):
            raise RuntimeError(f"{len(outputs)} outputs for {len(inputs)} prompts")
        if name == "raw text" and [list(o.prompt_token_ids) for o in outputs[:20]] != ids[:20]:
            raise RuntimeError("vLLM tokenized the texts differently from the worker")
        rows.append({"inputs": name, "docs": len(inputs), "times": times})
    return info, rows
