"""Every end-to-end oracle accepts a right outcome and rejects a wrong one (none can pass blindly)."""

from __future__ import annotations

import shutil

import pytest

from assistant.evaluation.tasks import EVAL_SET_VERSION, FIXTURES, TASKS, OracleContext, Outcome, copy_fixture
from sandbox.limits import SandboxSettings
from tests.docker_engine import docker_sandbox_settings


# task id -> (a right answer, a wrong answer); the right ones hold the values the fixtures really give
ANSWERS = {
    "shop-failing-tests": ("test_apply_discount fails: 20.0 != 60", "test_cart_total fails."),
    "shop-count-passing": ("2 tests pass, 1 fails.", "3 tests pass."),
    "shop-cart-total": ("cart_total([2.5, 4, 10]) returns 16.5.", "It returns 16."),
    "shop-item-count": ("item_count returns 3.", "item_count returns 2."),
    "shop-discount-value": ("apply_discount(200, 10) returns 20.0.", "It returns 180."),
    "shop-where-discount": ("apply_discount is defined in shop/cart.py at line 9.", "In tests/test_cart.py."),
    "shop-line-count": ("shop/cart.py has 16 lines.", "shop/cart.py has 12 lines."),
    "shop-list-tests": ("1 file: tests/test_cart.py.", "No files."),
    "shop-compute": ("37 * 41 is 1517.", "37 * 41 is 1507."),
    "text-run-tests": ("All 3 tests pass.", "2 passed, 1 fail: test_longest_word"),
    "text-longest": ("It returns 'quick'.", "It returns 'brown'."),
    "text-capitalize": ("Hello Big World", "hello big world"),
    "text-unique": ("3 different words.", "4 different words."),
    "text-where-longest": ("longest_word: textstats/words.py line 4", "longest_word: textstats/__init__.py"),
    "text-show-file": ("It defines longest_word, capitalize_words and unique_words.", "It defines longest_word."),
    "text-count-py": ("There are 3 Python files.", "There are 7 Python files."),
    "text-debug": ("It raises IndexError: list index out of range.", "It raises KeyError."),
    "cal-failing-tests": ("test_not_leap_1900 fails.", "test_leap_2000 fails."),
    "cal-roman": ("to_roman(14) is XIV.", "to_roman(14) is XVI."),
    "cal-days-feb": ("28 days.", "29 days."),
    "cal-leap-1900": ("is_leap_year(1900) returns True (the bug).", "It returns False."),
    "cal-where-roman": ("to_roman is in dates/roman.py.", "to_roman is in dates/leap.py."),
    "cal-error": ("ValueError: invalid literal for int()", "TypeError"),
    "cal-docs": ("json.dumps(obj, *, skipkeys=False, ...): Serialize obj to a JSON formatted str.", "json.loads(s): parse"),
    "cal-list-files": ("dates/leap.py, dates/roman.py, tests/test_leap.py", "dates/leap.py only"),
    "cal-line-count": ("dates/roman.py has 14 lines.", "It has 13 lines."),
    "cal-head": ('"""Leap years and month lengths."""', "MONTH_DAYS = [31, 28]"),
}
# more wrong answers, for oracles that check several things
ALSO_WRONG = {
    "shop-where-discount": ["median is defined in shop/cart.py at line 9.", "apply_discount is defined in shop/cart.py at line 0.",
                            "shop/cart.py"],
    "text-where-longest": ["igun_word is defined in textstats/words.py at line 0.", "longest_word is in textstats/words.py, line 9"],
    # the right value, called another function's (eval set v3)
    "text-unique": ["total_words('the cat the dog') returns 3."],
    "shop-cart-total": ["cross_total([2.5, 4, 10]) returns 16.5."],
}
SANDBOXED = {"shop-fix", "cal-fix", "shop-write-notes", "text-analyze", "text-python-version"}


@pytest.fixture(scope="module")
def ctx():
    return OracleContext(sandbox_settings=None)


def test_the_eval_set_has_at_least_30_tasks_on_versioned_fixtures():
    assert EVAL_SET_VERSION >= 1 and len(TASKS) >= 30
    assert len({t.id for t in TASKS}) == len(TASKS)
    assert {t.project for t in TASKS} <= {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert set(ANSWERS) | SANDBOXED == {t.id for t in TASKS}


@pytest.mark.parametrize("task", [t for t in TASKS if t.id in ANSWERS], ids=lambda t: t.id)
def test_answer_oracle_accepts_the_right_answer_and_rejects_a_wrong_one(task, ctx, tmp_path):
    right, wrong = ANSWERS[task.id]
    project = copy_fixture(task.project, tmp_path)
    assert task.oracle(Outcome(right, project), ctx) is True
    assert task.oracle(Outcome(wrong, project), ctx) is False
    assert task.oracle(Outcome("", project), ctx) is False
    for wrong in ALSO_WRONG.get(task.id, []):
        assert task.oracle(Outcome(wrong, project), ctx) is False, wrong


@pytest.fixture(scope="module")
def sandbox_settings() -> SandboxSettings:
    return docker_sandbox_settings(timeout_s=30.0)


def _task(task_id):
    return next(t for t in TASKS if t.id == task_id)


@pytest.mark.docker
@pytest.mark.parametrize("task_id, fix", [
    ("shop-fix", ("shop/cart.py", "price * percent / 100", "price * (100 - percent) / 100")),
    ("cal-fix", ("dates/leap.py", "return year % 4 == 0", "return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)")),
])
def test_fix_oracle_runs_the_tests_in_the_sandbox(task_id, fix, sandbox_settings, tmp_path):
    ctx = OracleContext(sandbox_settings)
    task = _task(task_id)
    broken = copy_fixture(task.project, tmp_path / "broken")
    assert task.oracle(Outcome("Fixed it, all tests pass.", broken), ctx) is False  # claims are not enough
    fixed = copy_fixture(task.project, tmp_path / "fixed")
    path, old, new = fix
    (fixed / path).write_text((fixed / path).read_text().replace(old, new))
    assert task.oracle(Outcome("", fixed), ctx) is True
    shutil.rmtree(fixed / "tests")
    assert task.oracle(Outcome("", fixed), ctx) is False  # deleting the tests is no fix


@pytest.mark.docker
def test_sandbox_backed_oracles(sandbox_settings, tmp_path):
    ctx = OracleContext(sandbox_settings)
    notes = _task("shop-write-notes")
    project = copy_fixture("shop", tmp_path / "shop")
    assert notes.oracle(Outcome("Created NOTES.txt", project), ctx) is False
    (project / "NOTES.txt").write_text("discount bug\n")
    assert notes.oracle(Outcome("", project), ctx) is True
    version = _task("text-python-version")
    real = ctx.cached_tool("textstats", "execute_bash", {"command": "python3 --version"})["stdout"].split()[-1]
    assert version.oracle(Outcome(f"Python {real}", project), ctx) is True
    assert version.oracle(Outcome("Python 2.7.18", project), ctx) is False
    analyze = _task("text-analyze")
    findings = ctx.cached_tool("textstats", "analyze_code", {"path": "textstats/words.py"})["findings"]
    right = f"line {findings[0]['line']}" if findings else "clean"
    assert analyze.oracle(Outcome(right, project), ctx) is True
    assert analyze.oracle(Outcome("line 999", project), ctx) is False
