"""The index package's one expected-failure type."""

from __future__ import annotations

from common.errors import AssistantError


class IndexingError(AssistantError):
    """An index that cannot be built, opened or searched, with a hint on what to do."""
