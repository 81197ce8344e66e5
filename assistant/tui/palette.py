"""The command palette (ctrl+p) offers the slash commands: the same table, the same app actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from assistant.tui.commands import COMMANDS


class SlashCommandsProvider(Provider):
    def _commands(self):
        return [c for c in COMMANDS if c.palette]

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(f"/{command.name}", partial(self.app.run_action, command.action), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            for text in (f"/{command.name}", command.help):
                score = matcher.match(text)
                if score > 0:
                    yield Hit(score, matcher.highlight(f"/{command.name}"), partial(self.app.run_action, command.action),
                              help=command.help)
                    break
