"""The Textual app: ``assistant`` with no subcommand opens it in the current directory.

``app.py`` (the App and its rules), ``app.tcss``, ``controller.py`` (plain Python: the agent
session, the model, the index and the sandbox behind one object the app drives), ``messages.py``
(every custom message), ``commands.py`` (slash commands, shared by completion and the palette),
``screens/`` and ``widgets/`` (one per file, styles beside them).
"""
