"""The repository summary in the system prompt, and its code map: the project's own modules with
their top-level definitions, so the model can name the module that defines a function."""

from __future__ import annotations

from pathlib import Path

from assistant.agent.context import code_map, repo_summary

FIXTURES = Path(__file__).resolve().parents[1] / "eval_fixtures"


def test_the_summary_maps_each_module_to_its_functions():
    summary = repo_summary(FIXTURES / "calendar_tools")
    code = next(line for line in summary.splitlines() if line.startswith("Code: "))
    assert "dates/roman.py (to_roman)" in code
    assert "dates/leap.py (is_leap_year, days_in_month)" in code


def test_own_modules_come_before_tests_and_vendored_code(tmp_path):
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.py").write_text("def vendored():\n    pass\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_app.py").write_text("def test_run():\n    pass\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "main.py").write_text("class Runner:\n    pass\n\n\ndef run():\n    pass\n\n\ndef _private():\n    pass\n")
    files = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.py")]
    assert code_map(tmp_path, files) == "app/main.py (Runner, run); tests/test_app.py (test_run); vendor/lib.py (vendored)"


def test_the_map_is_bounded_and_skips_what_does_not_parse(tmp_path):
    (tmp_path / "broken.py").write_text("def (:\n")
    for i in range(30):
        (tmp_path / f"mod{i:02d}.py").write_text("".join(f"def f{j}():\n    pass\n" for j in range(20)))
    files = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.py")]
    mapped = code_map(tmp_path, files, max_files=10, max_names=6, max_chars=600)
    assert "broken.py" not in mapped
    assert len(mapped) <= 600 and mapped.count(" (") <= 10
    assert "mod00.py (f0, f1, f2, f3, f4, f5, +14)" in mapped
