"""Isolated execution of model-run code (Docker, bubblewrap) and the tools the model calls.

The public surface:
  ``open_sandbox(settings, project)``  the best backend that works here (``sandbox.factory``)
  ``Sandbox.run(code, language)``      one call, an ``ExecResult`` (``sandbox.base``)
  ``SandboxSettings``                  limits and choices, the ``[sandbox]`` settings table
  ``sandbox.tools``                    the tools the model calls, with their JSON schemas

This package never imports ``assistant``: the CLI reads the settings file and passes them in.
"""

from __future__ import annotations

from common.errors import AssistantError


class SandboxError(AssistantError):
    """An expected sandbox failure: no engine, a missing image, a dead container, bad settings."""


__all__ = ["SandboxError"]
