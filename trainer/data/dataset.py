"""Token files as memmaps, and the seeded batch sampler whose state lives in checkpoints.

Every rank draws the same global batch of window offsets from one seeded generator and keeps
its own slice, so N processes with batch b see exactly what one process with batch N*b sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer import TrainerError


def open_tokens(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """Memory-map a prepared ``.npy`` token file, with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise TrainerError(f"token file not found: {path}", "run 'assistant data prepare' first")
    try:
        tokens = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise TrainerError(f"{path} is not a valid .npy token file ({str(exc)[:80]})", "prepare the data again") from exc
    if tokens.ndim != 1 or tokens.dtype not in (np.uint16, np.uint32, np.int32, np.int64):
        raise TrainerError(f"{path} holds {tokens.dtype} of shape {tokens.shape}, not a 1-D token array", "prepare the data again")
    if vocab_size is not None and tokens.size:
        sample = np.asarray(tokens[:: max(1, tokens.size // 100_000)])
        if int(sample.max()) >= vocab_size:
            raise TrainerError(
                f"{path} holds token id {int(sample.max())} but the model's vocabulary has {vocab_size}",
                "the data was prepared with another tokenizer",
            )
    return tokens


class BatchSampler:
    """Random windows of ``seq_len + 1`` tokens; reproducible and resumable."""

    def __init__(self, tokens: np.ndarray, seq_len: int, global_batch: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if tokens.size < seq_len + 2:
            raise TrainerError(
                f"the training data has {tokens.size} tokens, fewer than one sequence of {seq_len + 1}",
                "use a smaller --seq-len or a larger corpus",
            )
        if global_batch % world_size:
            raise ValueError("global batch must divide by world size")
        self.tokens, self.seq_len = tokens, seq_len
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size
        self.rng = np.random.default_rng(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = self.rng.integers(0, self.tokens.size - self.seq_len - 1, size=self.global_batch)
        per_rank = self.global_batch // self.world_size
        mine = offsets[self.rank * per_rank : (self.rank + 1) * per_rank]
        return windows(self.tokens, mine, self.seq_len)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def windows(tokens: np.ndarray, offsets, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(seq_len + 1)
    data = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # (B, seq_len + 1)
    return data[:, :-1], data[:, 1:]


def eval_offsets(n_tokens: int, seq_len: int, count: int) -> list[int]:
    """Evenly spaced, fixed windows over the validation set (the same at every evaluation)."""
    last = n_tokens - seq_len - 1
    if last < 0:
        return []
    if count <= 1 or last == 0:
        return [0]
    return sorted({int(round(i * last / (count - 1))) for i in range(count)})


def open_mask(tokens_path: str | Path, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loss mask and conversation starts beside a token file (``X.npy`` → ``X_mask.npy``, ``X_starts.npy``)."""
    tokens_path = Path(tokens_path)
    arrays = []
    for suffix in ("_mask", "_starts"):
        path = tokens_path.with_name(tokens_path.stem + suffix + ".npy")
        if not path.exists():
            raise TrainerError(f"{path} is missing", "prepare the data again with 'assistant data prepare'")
        try:
            arrays.append(np.load(path, mmap_mode="r"))
        except (ValueError, OSError, EOFError) as exc:
            raise TrainerError(f"{path} is not a valid .npy file", "prepare the data again") from exc
    mask, starts = arrays
    if mask.shape != tokens.shape:
        raise TrainerError(f"the mask beside {tokens_path} does not match its tokens", "prepare the data again")
    if starts.size == 0 or int(np.asarray(starts).max()) >= tokens.size:
        raise TrainerError(f"the conversation offsets beside {tokens_path} are out of range", "prepare the data again")
    return mask, np.asarray(starts, dtype=np.int64)


def masked_windows(tokens: np.ndarray, mask: np.ndarray, offsets, seq_len: int, pad_id: int = 0):
    """(x, y, loss mask of y) windows starting at ``offsets``; past the end: padding, masked out."""
    xs, ys, ms = [], [], []
    for start in np.asarray(offsets, dtype=np.int64):
        chunk = np.asarray(tokens[start : start + seq_len + 1], dtype=np.int64)
        weights = np.asarray(mask[start : start + seq_len + 1], dtype=np.int64)
        if chunk.size < seq_len + 1:
            pad = seq_len + 1 - chunk.size
            chunk = np.concatenate([chunk, np.full(pad, pad_id, dtype=np.int64)])
            weights = np.concatenate([weights, np.zeros(pad, dtype=np.int64)])
        xs.append(chunk[:-1])
        ys.append(chunk[1:])
        ms.append(weights[1:])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ms))


class ConversationSampler:
    """Random conversations (windows that start at one), with their loss masks; resumable."""

    def __init__(self, tokens: np.ndarray, mask: np.ndarray, starts: np.ndarray, seq_len: int, global_batch: int,
                 seed: int, rank: int = 0, world_size: int = 1, pad_id: int = 0) -> None:
        if global_batch % world_size:
            raise ValueError("global batch must divide by world size")
        self.tokens, self.mask, self.starts, self.seq_len = tokens, mask, starts, seq_len
        self.global_batch, self.rank, self.world_size, self.pad_id = global_batch, rank, world_size, pad_id
        self.rng = np.random.default_rng(seed)

    def next_batch(self):
        picks = self.starts[self.rng.integers(0, self.starts.size, size=self.global_batch)]
        per_rank = self.global_batch // self.world_size
        mine = picks[self.rank * per_rank : (self.rank + 1) * per_rank]
        return masked_windows(self.tokens, self.mask, mine, self.seq_len, self.pad_id)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class ReplayMixSampler:
    """Conversation batches with a share of plain next-token windows from earlier stages' data (replay),
    so supervised fine-tuning does not erase the language and code modelling it starts from.

    Each row of a batch is a replay window with probability ``fraction``. Its loss weight per token is the
    conversations' mean mask density, so a replay row weighs about as much as a conversation row in the
    masked mean loss: ``fraction`` is then also the replay's share of the loss. Resumable."""

    def __init__(self, conversations: ConversationSampler, replay: list[np.ndarray], fraction: float, seed: int,
                 rank: int = 0) -> None:
        if not 0 < fraction < 1:
            raise ValueError("replay fraction must be in (0, 1)")
        replay = [r for r in replay if r.size > conversations.seq_len + 2]
        if not replay:
            raise TrainerError("no earlier-stage data long enough to replay", "prepare the language or code data in --data-dir")
        self.conversations, self.replay, self.fraction = conversations, replay, fraction
        self.weight = float(np.asarray(conversations.mask[: 1 << 22], dtype=np.float64).mean()) or 1.0
        self.rng = np.random.default_rng([seed, 7919, rank])

    def next_batch(self):
        x, y, m = self.conversations.next_batch()
        m = m.to(torch.float32)
        seq_len = self.conversations.seq_len
        for row in np.flatnonzero(self.rng.random(x.size(0)) < self.fraction):
            tokens = self.replay[int(self.rng.integers(len(self.replay)))]
            start = int(self.rng.integers(0, tokens.size - seq_len - 1))
            rx, ry = windows(tokens, [start], seq_len)
            x[row], y[row] = rx[0], ry[0]
            m[row] = self.weight
        return x, y, m

    def state_dict(self) -> dict:
        return {"conversations": self.conversations.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if "conversations" not in state:
            raise TrainerError("the interrupted run trained without replay", "resume with its --replay-fraction (0)")
        self.conversations.load_state_dict(state["conversations"])
        self.rng.bit_generator.state = state["rng"]


def replay_tokens(data_dir: str, tokenizer_hash: str | None) -> tuple[list, list[str]]:
    """The earlier stages' training tokens in ``data_dir`` prepared with this tokenizer (language, code):
    what stage 3, DPO/KTO and stage 10 replay. (arrays, their paths)"""
    from trainer.data.prepare import read_manifest

    arrays, sources = [], []
    for stage in ("language", "code"):
        path = Path(data_dir) / f"{stage}_train.npy"
        if not path.exists():
            continue
        try:
            manifest = read_manifest(Path(data_dir), stage)
        except TrainerError:
            continue
        if tokenizer_hash and manifest.get("tokenizer_hash") not in (None, tokenizer_hash):
            continue
        tokens = open_tokens(path)
        if tokens.size > 64:
            arrays.append(np.asarray(tokens))
            sources.append(str(path))
    return arrays, sources
