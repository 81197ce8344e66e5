"""One module per command group. Each defines ``register(subparsers)``.

``register`` must stay cheap (no torch, chromadb or textual imports): heavy imports
happen inside the handler, so ``assistant --help`` is instant and headless commands
never import Textual.
"""

COMMAND_MODULES = [
    "assistant.commands.train",
    "assistant.commands.data",
    "assistant.commands.sandbox",
    "assistant.commands.index",
    "assistant.commands.generate",
    "assistant.commands.quantize",
    "assistant.commands.model",
    "assistant.commands.agent",
    "assistant.commands.feedback",
    "assistant.commands.eval",
    "assistant.commands.retrain",
]
