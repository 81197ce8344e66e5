"""The app's screens, one per module: the chat, approvals, feedback reasons, the sessions list."""
