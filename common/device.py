"""The one place that chooses a torch device: cuda > mps > cpu unless the user names one."""

from __future__ import annotations

from common.errors import UsageError

KNOWN_DEVICES = ("auto", "cpu", "cuda", "mps")


def choose_device(requested: str | None = "auto"):
    """Return a ``torch.device`` for ``requested`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps').

    Raises UsageError with a hint when the device is unknown or not present.
    """
    import torch

    name = (requested or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":", 1)[0]
    if kind not in KNOWN_DEVICES:
        raise UsageError(f"unknown device '{requested}'", "use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device '{requested}' is not available", "no CUDA GPU found; use --device cpu")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"device '{requested}' is not available",
                f"this machine has {torch.cuda.device_count()} CUDA device(s)",
            )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"device '{requested}' is not available", "MPS needs Apple Silicon; use --device cpu")
    return torch.device(name)
