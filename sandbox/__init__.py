"""Isolated execution of model-run code (Docker, bubblewrap) and the tools the model calls."""
