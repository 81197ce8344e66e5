"""The index from the TUI: /index builds it with progress, /search finds code, the watcher re-indexes."""

from __future__ import annotations

from assistant.settings import set_project_setting
from assistant.tui.controller import IndexProgress
from assistant.tui.widgets.notice import NoticeLine, NoticeMarkdown
from tests.tui.conftest import make_app, run, send, start, wait_for


def _notes(app) -> list[str]:
    return [n.text for n in app.chat.transcript.children if isinstance(n, (NoticeLine, NoticeMarkdown))]


def test_index_search_and_watcher(project, embedder_cache):
    set_project_setting(project, "index.cache_dir", str(embedder_cache))
    set_project_setting(project, "index.debounce_ms", 100)
    (project / "shapes.py").write_text("def area_of_circle(radius):\n    return 3.14159 * radius * radius\n")

    async def scenario():
        app = make_app(project, None, watch_index=True)
        progress: list[IndexProgress] = []
        statuses: list[str] = []
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            assert app.chat.status.index == "index: none"
            forward = app.controller.on_event
            app.controller.on_event = lambda e: (progress.append(e) if isinstance(e, IndexProgress) else None,
                                                 forward(e))
            app.chat.status.watch(app.chat.status, "index", lambda value: statuses.append(value), init=False)
            await send(pilot, "/index")
            await wait_for(pilot, lambda: any(n.startswith("indexed ") for n in _notes(app)), what="the index")
            assert app.chat.status.index == "index: fresh"
            assert {p.stage for p in progress} >= {"scan", "embed", "done"}
            assert any(s.startswith("index: re-indexing") for s in statuses)  # progress was shown
            await send(pilot, "/search area of a circle")
            await wait_for(pilot, lambda: any("shapes.py" in n for n in _notes(app)), what="the search results")
            # the watcher keeps it fresh: a new file is indexed without asking
            done = len([p for p in progress if p.stage == "done"])
            (project / "volume.py").write_text("def volume_of_cube(side):\n    return side ** 3\n")
            await wait_for(pilot, lambda: len([p for p in progress if p.stage == "done"]) > done,
                           what="the watcher's update")
            await wait_for(pilot, lambda: app.chat.status.index == "index: fresh")
            assert app.controller.index.status().files == 4  # greet.py, README.md, shapes.py, volume.py

    run(scenario())
