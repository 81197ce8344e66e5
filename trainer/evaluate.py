"""Held-out perplexity and decode speed of a model, the yardsticks of quantization and export."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from trainer.data.dataset import eval_offsets, windows
from trainer.models import lm_loss


@torch.inference_mode()
def perplexity(model, tokens: np.ndarray, seq_len: int = 256, windows_count: int = 32, batch_size: int = 8) -> dict:
    """Mean next-token loss and perplexity over fixed, evenly spaced windows of ``tokens``.

    The windows are the same for every call, so two models (fp32 and int8) are compared on exactly
    the same text.
    """
    device = next(model.parameters()).device
    seq = min(seq_len, int(tokens.size) - 2, model.config.max_seq_len)
    if seq < 1:
        raise ValueError(f"{tokens.size} tokens are too few to measure perplexity")
    offsets = eval_offsets(int(tokens.size), seq, windows_count)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(offsets), batch_size):
        x, y = windows(tokens, offsets[start : start + batch_size], seq)
        logits, _ = model(x.to(device))
        n = y.numel()
        total += float(lm_loss(logits, y.to(device))) * n
        count += n
    model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


def decode_speed(model, prompt: Sequence[int], new_tokens: int = 64, repeats: int = 3) -> float:
    """Greedy decode tokens/s after ``prompt`` (the best of ``repeats`` runs; the cache is on)."""
    from trainer.decode import DecodeTimes, decode_tokens

    best = 0.0
    for _ in range(repeats):
        times = DecodeTimes()
        for _ in decode_tokens(model, prompt, new_tokens, times=times, context=len(prompt) + new_tokens):
            pass
        if times.tokens > 1 and times.decode_s > 0:
            best = max(best, (times.tokens - 1) / times.decode_s)
    return best

