"""Code retrieved from the real codebase index lands in the prompt when it is relevant."""

from __future__ import annotations

import pytest

from assistant.agent import AgentSession, AgentSettings
from assistant.agent import events as ev
from tests.agent.helpers import Recorder, ScriptedModel, call


@pytest.mark.slow
def test_relevant_code_from_the_index_is_in_the_prompt(project, tokenizer, embedder_cache):
    from index import IndexSettings, open_index

    (project / "stats.py").write_text("def median(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n")
    index = open_index(project, IndexSettings(cache_dir=str(embedder_cache)))
    index.update()
    model = ScriptedModel(tokenizer, ["It is in stats.py.", "Hello!",
                                      call("search_codebase", query="sorted median of values", k=3), "stats.py:1-3"])
    session = AgentSession(project, model=model, sandbox_factory=None, index=index, settings=AgentSettings())
    rec = Recorder()
    session.run_turn("where is the median function?", on_event=rec)
    system = model.prompts[0][0][0]["content"]
    assert "Code from the project that may be relevant" in system
    assert "stats.py:1-3" in system and "def median(values):" in system
    assert not any("no codebase index" in n.text for n in rec.of(ev.Notice))
    session.run_turn("hi!", on_event=Recorder())  # nothing in it to look up: no retrieval
    assert "Code from the project" not in model.prompts[1][0][0]["content"]
    # the model can search the index itself: a read-only tool offered only with an index
    assert "search_codebase" in [t["name"] for t in model.prompts[0][1]]
    rec = Recorder()
    session.run_turn("find it yourself", on_event=rec)
    done = rec.of(ev.ToolCallFinished)[0]
    assert done.name == "search_codebase" and done.status == "ok" and "stats.py:1-3" in done.output
    plain = AgentSession(project, model=ScriptedModel(tokenizer, []), sandbox_factory=None, index=None)
    assert "search_codebase" not in [t["name"] for t in plain.allowed_tools()]
    plain.index = index  # an index built later (the TUI's /index) is used from then on
    assert "search_codebase" in [t["name"] for t in plain.allowed_tools()] and plain.context.index is index
