"""Stage-3 data: conversations whose tool results come from really running the calls in the
Docker sandbox; schema-valid calls, every tool covered, deterministic, no held-out leakage."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from sandbox.limits import SandboxSettings
from tests.docker_engine import docker_sandbox_settings
from sandbox.tools import TOOLS, validation_error
from trainer import TrainerError
from trainer.data.chat_format import parse_reply, render
from trainer.data.tokenizer import load_tokenizer
from trainer.data.tool_calling import (
    FAMILIES,
    Example,
    ToolRunner,
    check_no_leakage,
    generate,
    prepare_tool_calling,
    tool_calls,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def sandbox_settings() -> SandboxSettings:
    return docker_sandbox_settings(timeout_s=20.0)


@pytest.fixture(scope="module")
def generated(sandbox_settings, tmp_path_factory):
    runner = ToolRunner(sandbox_settings)
    try:
        sets = generate(tmp_path_factory.mktemp("tc"), runner, num_examples=len(FAMILIES) + 4,
                        heldout_examples=len(FAMILIES), seed=7)
    finally:
        runner.close()
    return sets


def test_every_call_is_schema_valid_and_parses_back(generated):
    for example in generated["train"] + generated["heldout"]:
        for call in tool_calls(example):
            assert call["name"] in TOOLS
            assert validation_error(TOOLS[call["name"]], call["arguments"]) is None, (example.id, call)
            text = f'<|tool_call|>{json.dumps({"name": call["name"], "arguments": call["arguments"]})}'
            assert parse_reply(text).name == call["name"]


def test_every_tool_and_every_family_is_covered(generated):
    train = generated["train"]
    assert {e.family for e in train} == set(FAMILIES)
    assert {e.family for e in generated["heldout"]} == set(FAMILIES)  # the eval measures every family too
    used = {c["name"] for e in train for c in tool_calls(e)}
    assert used == set(TOOLS), f"tools never called: {set(TOOLS) - used}"
    chains = [e for e in train if e.family == "fix_chain"]
    assert [c["name"] for c in tool_calls(chains[0])] == ["run_tests", "read_file", "apply_patch", "run_tests"]
    recoveries = [e for e in train if e.family == "recover"]
    first_result = json.loads(recoveries[0].messages[3]["content"])
    assert first_result["ok"] is False and "does not exist" in first_result["error"]
    assert all(not tool_calls(e) for e in train if e.family == "no_tool")


def test_results_are_real_executions(generated):
    """Each execute_python result is what the code prints when run here; the answer states it."""
    checked = 0
    for example in generated["train"] + generated["heldout"]:
        if example.family != "execute_python":
            continue
        code = tool_calls(example)[0]["arguments"]["code"]
        expected = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True).stdout
        result = json.loads(example.messages[3]["content"])
        assert result["stdout"] == expected
        assert expected.strip() in example.messages[-1]["content"]
        checked += 1
    assert checked >= 1
    tests = next(e for e in generated["train"] if e.family == "fix_chain")
    final = json.loads(tests.messages[-2]["content"])
    assert final["ok"] and final["counts"]["failed"] == 0  # the real rerun after the real patch


def test_heldout_phrasings_and_values_never_occur_in_training(generated):
    train, heldout = generated["train"], generated["heldout"]
    assert check_no_leakage(train, heldout) == []
    # the check itself catches a leak
    leaked = Example("x", "heldout", train[0].family, train[0].template, train[0].messages, None, [], train[0].values)
    assert check_no_leakage(train, [leaked])


def test_a_sandbox_that_cannot_run_code_stops_generation_with_its_reason(sandbox_settings, tmp_path):
    """A missing image once made every code-running family produce nothing, silently: now it stops."""
    broken = dataclasses.replace(sandbox_settings, image="assistant-sandbox:no-such-tag")
    runner = ToolRunner(broken)
    try:
        with pytest.raises(TrainerError, match="the sandbox cannot run code: .*no-such-tag"):
            generate(tmp_path, runner, num_examples=len(FAMILIES), heldout_examples=4, seed=1)
    finally:
        runner.close()


def test_generation_is_deterministic_for_a_seed(sandbox_settings, tmp_path):
    def once(where):
        runner = ToolRunner(sandbox_settings)
        try:
            sets = generate(where, runner, num_examples=len(FAMILIES), heldout_examples=4, seed=11)
        finally:
            runner.close()
        return [json.dumps(e.to_json(), sort_keys=True).replace(str(where), "") for e in sets["train"] + sets["heldout"]]

    assert once(tmp_path / "a") == once(tmp_path / "b")


def test_prepared_files_hold_masks_and_the_compact_tool_style(sandbox_settings, prepared, tmp_path):
    tokenizer = load_tokenizer(prepared["tokenizer"])
    runner = ToolRunner(sandbox_settings)
    try:
        manifest = prepare_tool_calling(tmp_path, tokenizer, runner, num_examples=len(FAMILIES), heldout_examples=4, seed=3)
    finally:
        runner.close()
    import numpy as np

    ids, mask = np.load(tmp_path / "tool_calling_train.npy"), np.load(tmp_path / "tool_calling_train_mask.npy")
    starts = np.load(tmp_path / "tool_calling_train_starts.npy")
    assert ids.shape == mask.shape and 0 < mask.sum() < mask.size
    assert manifest["chat"]["tools_style"] == "compact"
    first = json.loads((tmp_path / "tool_calling_train.jsonl").read_text().splitlines()[0])
    rendered = render(first["messages"], tokenizer, tools=[t.schema() for t in TOOLS.values()], tools_style="compact")
    assert list(ids[starts[0] : starts[0] + len(rendered)]) == rendered.ids
    assert list(mask[starts[0] : starts[0] + len(rendered)]) == rendered.mask
    assert (tmp_path / "tool_calling_heldout.jsonl").exists()
