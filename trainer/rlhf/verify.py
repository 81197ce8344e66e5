"""Verifiable rewards: run a candidate's code against assert-line tests in the sandbox.

One sandbox session serves many checks. Every check is one program: the candidate is executed in a
fresh namespace, then each test in a copy of it; the program prints how many passed. Model-written
code therefore never runs on the host (the sandbox's limits: no network, read-only project,
timeouts, memory caps).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from pathlib import Path

from trainer import TrainerError

RESULT_MARK = "__VERIFY_RESULT__"
_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)

_HARNESS = """
import json
CODE = {code}
TESTS = {tests}
ns = {{}}
passed = 0
try:
    exec(compile(CODE, "solution.py", "exec"), ns)
except BaseException:
    TESTS_RUN = False
else:
    TESTS_RUN = True
    for test in TESTS:
        try:
            exec(compile(test, "test.py", "exec"), dict(ns))
            passed += 1
        except BaseException:
            pass
print({mark!r}, passed, len(TESTS))
"""


def extract_code(text: str) -> str:
    """The code of a reply: its first fenced block, else the whole text."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip() + "\n"


class CodeVerifier:
    """``score(code, tests)`` -> share of tests passed (0.0 .. 1.0), run in the sandbox."""

    def __init__(self, settings=None, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.backend = "unstarted"
        self._mark = f"{RESULT_MARK}{secrets.token_hex(8)}"  # model code cannot forge the result line
        self._box = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> CodeVerifier:
        from sandbox import SandboxError
        from sandbox.factory import open_sandbox
        from sandbox.limits import SandboxSettings

        settings = self.settings or SandboxSettings()
        self._tmp = tempfile.TemporaryDirectory(prefix="assistant-verify-")
        Path(self._tmp.name).chmod(0o755)
        try:
            self._box = open_sandbox(settings, self._tmp.name, confirm=lambda *_: False)
        except SandboxError as exc:
            self._tmp.cleanup()
            raise TrainerError(f"the sandbox that verifies code did not start: {exc}",
                               "run 'assistant sandbox status' (Docker or bubblewrap is needed)") from exc
        self.backend = self._box.info().backend
        if self.backend == "none":
            self.close()
            raise TrainerError("no sandbox to run model-written code in", "install Docker or bubblewrap ('assistant sandbox status')")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def run(self, code: str, tests: list[str]) -> tuple[int, int]:
        """(tests passed, tests total); a crash, a timeout or garbage output counts as none passed."""
        if self._box is None:
            raise TrainerError("the verifier is not started", "use it as a context manager")
        program = _HARNESS.format(code=json.dumps(code), tests=json.dumps(list(tests)), mark=self._mark)
        result = self._box.run(program, "python", timeout=self.timeout_s)
        for line in reversed(result.stdout.splitlines()):
            if line.startswith(self._mark + " "):
                parts = line.split()
                try:
                    return int(parts[1]), int(parts[2])
                except (IndexError, ValueError):
                    break
        return 0, len(tests)

    def score(self, code: str, tests: list[str]) -> float:
        passed, total = self.run(code, tests)
        return passed / total if total else 0.0
