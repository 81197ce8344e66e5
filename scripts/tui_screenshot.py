"""Save an SVG screenshot of the chat after one message (the README's picture).

    python scripts/tui_screenshot.py --model models/default/model_int8.pth --project . \
        --message "what is six times seven?" --output docs/images/tui.svg

Runs the real app headless (Textual's ``run_test``), answers every approval with "Allow once",
waits for the turn to end, and writes Textual's own SVG screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def shoot(args: argparse.Namespace) -> None:
    from assistant.tui.app import AssistantApp
    from assistant.tui.controller import LaunchOptions
    from assistant.tui.history import PromptHistory
    from assistant.tui.screens.approval import ApprovalScreen

    app = AssistantApp(LaunchOptions(project=Path(args.project).resolve(), model=args.model, device="cpu",
                                     watch_index=False), history=PromptHistory(None))
    async with app.run_test(size=(args.width, args.height)) as pilot:
        deadline = time.monotonic() + args.timeout
        while not app.ready and time.monotonic() < deadline:
            await pilot.pause(0.1)
        app.chat.prompt.cursor_blink = False
        app.chat.prompt.load_text(args.message)
        app.chat.prompt.submit()
        await pilot.pause(0.2)
        while (app.generating or not app.turns_finished) and time.monotonic() < deadline:
            if isinstance(app.screen, ApprovalScreen):
                await pilot.press("enter")
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.save_screenshot(filename=Path(args.output).name, path=str(Path(args.output).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--project", default=".")
    parser.add_argument("--message", default="hello")
    parser.add_argument("--output", default="docs/images/tui.svg")
    parser.add_argument("--width", type=int, default=110)
    parser.add_argument("--height", type=int, default=34)
    parser.add_argument("--timeout", type=float, default=300)
    asyncio.run(shoot(parser.parse_args()))


if __name__ == "__main__":
    main()
