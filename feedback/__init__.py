"""Thumbs-up/down feedback and implicit signals: the store, redaction, export to training sets.

    from feedback import FeedbackStore
    store = FeedbackStore()                         # $XDG_DATA_HOME/assistant/feedback.db
    store.add(kind="rating", value=-1, reason=..., session_id=..., turn_id=..., messages=[...],
              response="...", tool_calls=[...], model_id="...")
    for record in store.since(0): ...              # what retraining reads (FeedbackRecord)

Importing this package is cheap (sqlite3 and re only).
"""

from common.errors import AssistantError


class FeedbackError(AssistantError):
    """An expected feedback failure: an unreadable or newer database, a bad query."""


from feedback.redact import redact, redact_obj  # noqa: E402
from feedback.store import KINDS, FeedbackRecord, FeedbackStore, default_feedback_path  # noqa: E402

__all__ = ["KINDS", "FeedbackError", "FeedbackRecord", "FeedbackStore", "default_feedback_path", "redact", "redact_obj"]
