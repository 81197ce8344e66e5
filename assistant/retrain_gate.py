"""The evaluation suite's part of the promotion gate: tool-call validity, right-tool rate and
end-to-end task success, each a paired comparison of the current and the candidate model on the
same held-out conversations and the same tasks (``assistant.evaluation``).

It lives on the application side because it drives the agent and the sandbox; the trainer's gate
(``trainer.continual.gate``) takes it as ``extra_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _heldout_items(report: dict) -> dict[str, dict]:
    return {row["id"]: row for row in report.get("rows", [])}


def make_eval_metrics(data_dir: Path, sandbox_settings: Any, heldout_limit: int, tasks_limit: int,
                      floor: float = 0.05, z: float = 2.0,
                      log: Callable[[str], None] = lambda s: None) -> Callable[[Path, Path], list[dict]]:
    """``extra_metrics`` for ``trainer.continual.retrain``: rows the trainer's gate understands."""

    def metrics(current_path: Path, candidate_path: Path) -> list[dict]:
        from assistant.evaluation.heldout import evaluate_heldout
        from assistant.evaluation.tasks import run_tasks
        from assistant.runtime import load
        from trainer.continual.gate import paired
        from trainer.data.tool_calling import read_examples

        rows: list[dict] = []
        heldout_path = Path(data_dir) / "tool_calling_heldout.jsonl"
        models = {"current": load(current_path, device="cpu"), "candidate": load(candidate_path, device="cpu")}
        if heldout_limit and heldout_path.exists():
            examples = read_examples(heldout_path)
            reports = {k: _heldout_items(evaluate_heldout(m, examples, heldout_limit)) for k, m in models.items()}
            ids = sorted(reports["current"])
            expecting = [i for i in ids if reports["current"][i]["expects_call"]]
            valid = {k: np.array([float(r[i]["attempted"] and r[i]["valid"]) for i in expecting]) for k, r in reports.items()}
            right = {k: np.array([float(r[i]["right_tool"]) for i in ids]) for k, r in reports.items()}
            if expecting:
                rows.append(paired("tool_call:validity", valid["current"], valid["candidate"], "higher", floor, z).row())
            rows.append(paired("tool_call:right_tool", right["current"], right["candidate"], "higher", floor, z).row())
        else:
            note = "no held-out set (assistant data prepare --stage tool_calling)" if heldout_limit else "turned off"
            rows += [{"name": n, "current": None, "candidate": None, "better": "higher", "measured": False, "note": note}
                     for n in ("tool_call:validity", "tool_call:right_tool")]
        if tasks_limit:
            results = {k: run_tasks(m, sandbox_settings, tasks_limit, log=log)["results"] for k, m in models.items()}
            ok = {k: np.array([float(r["ok"]) for r in v]) for k, v in results.items()}
            rows.append(paired("end_to_end:success", ok["current"], ok["candidate"], "higher", floor, z).row())
        else:
            rows.append({"name": "end_to_end:success", "current": None, "candidate": None, "better": "higher",
                         "measured": False, "note": "turned off (--gate-tasks 0)"})
        return rows

    return metrics
