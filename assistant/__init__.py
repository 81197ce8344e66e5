"""The assistant application: CLI, TUI, agent loop and model runtime."""

__version__ = "0.1.0"
