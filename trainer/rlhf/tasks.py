"""Small programming tasks with reference solutions and tests: the verifiable part of stage 4.

Each task is a request, a reference solution and assert-line tests. Preference pairs and GRPO
rewards come from *running* code against the tests in the sandbox, never from these labels alone:
the reference is one candidate among its mutants, and whatever passes is what is preferred.
A user's own tasks come from a JSONL file with the same fields (``--tasks``).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from trainer import TrainerError

BUILTIN_TASKS: list[dict] = [
    {"name": "add", "request": "Write a Python function add(a, b) that returns the sum of a and b.",
     "solution": "def add(a, b):\n    return a + b\n",
     "tests": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]},
    {"name": "is_even", "request": "Write a Python function is_even(n) that returns True when n is even.",
     "solution": "def is_even(n):\n    return n % 2 == 0\n",
     "tests": ["assert is_even(4)", "assert not is_even(7)", "assert is_even(0)"]},
    {"name": "maximum", "request": "Write a Python function maximum(values) returning the largest item of a non-empty list.",
     "solution": "def maximum(values):\n    best = values[0]\n    for value in values[1:]:\n        if value > best:\n            best = value\n    return best\n",
     "tests": ["assert maximum([1, 5, 3]) == 5", "assert maximum([-2, -7]) == -2", "assert maximum([4]) == 4"]},
    {"name": "factorial", "request": "Write a Python function factorial(n) for n >= 0.",
     "solution": "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
     "tests": ["assert factorial(0) == 1", "assert factorial(5) == 120", "assert factorial(3) == 6"]},
    {"name": "reverse", "request": "Write a Python function reverse(text) that returns text reversed.",
     "solution": "def reverse(text):\n    return text[::-1]\n",
     "tests": ["assert reverse('abc') == 'cba'", "assert reverse('') == ''", "assert reverse('ab') == 'ba'"]},
    {"name": "count_vowels", "request": "Write a Python function count_vowels(text) counting the letters a, e, i, o, u.",
     "solution": "def count_vowels(text):\n    count = 0\n    for ch in text.lower():\n        if ch in 'aeiou':\n            count += 1\n    return count\n",
     "tests": ["assert count_vowels('hello') == 2", "assert count_vowels('xyz') == 0", "assert count_vowels('AEIOU') == 5"]},
    {"name": "fib", "request": "Write a Python function fib(n) returning the n-th Fibonacci number, fib(0) == 0.",
     "solution": "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
     "tests": ["assert fib(0) == 0", "assert fib(1) == 1", "assert fib(10) == 55"]},
    {"name": "clamp", "request": "Write a Python function clamp(x, low, high) that limits x to [low, high].",
     "solution": "def clamp(x, low, high):\n    if x < low:\n        return low\n    if x > high:\n        return high\n    return x\n",
     "tests": ["assert clamp(5, 0, 10) == 5", "assert clamp(-3, 0, 10) == 0", "assert clamp(12, 0, 10) == 10"]},
    {"name": "mean", "request": "Write a Python function mean(values) returning the average of a non-empty list.",
     "solution": "def mean(values):\n    return sum(values) / len(values)\n",
     "tests": ["assert mean([1, 2, 3]) == 2", "assert mean([4]) == 4", "assert mean([1, 2]) == 1.5"]},
    {"name": "is_palindrome", "request": "Write a Python function is_palindrome(text) that ignores case.",
     "solution": "def is_palindrome(text):\n    lowered = text.lower()\n    return lowered == lowered[::-1]\n",
     "tests": ["assert is_palindrome('Level')", "assert not is_palindrome('abc')", "assert is_palindrome('')"]},
    {"name": "square_all", "request": "Write a Python function square_all(values) returning the squares of a list.",
     "solution": "def square_all(values):\n    return [v * v for v in values]\n",
     "tests": ["assert square_all([1, 2, 3]) == [1, 4, 9]", "assert square_all([]) == []", "assert square_all([-2]) == [4]"]},
    {"name": "count_words", "request": "Write a Python function count_words(text) counting whitespace-separated words.",
     "solution": "def count_words(text):\n    return len(text.split())\n",
     "tests": ["assert count_words('a b c') == 3", "assert count_words('') == 0", "assert count_words('  one  ') == 1"]},
    {"name": "gcd", "request": "Write a Python function gcd(a, b) for non-negative integers.",
     "solution": "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
     "tests": ["assert gcd(12, 18) == 6", "assert gcd(7, 5) == 1", "assert gcd(0, 4) == 4"]},
    {"name": "unique", "request": "Write a Python function unique(values) returning the items without repeats, in order.",
     "solution": "def unique(values):\n    seen = []\n    for v in values:\n        if v not in seen:\n            seen.append(v)\n    return seen\n",
     "tests": ["assert unique([1, 1, 2]) == [1, 2]", "assert unique([]) == []", "assert unique([3, 2, 3, 1]) == [3, 2, 1]"]},
    {"name": "power", "request": "Write a Python function power(base, exp) for integer exp >= 0 without using **.",
     "solution": "def power(base, exp):\n    result = 1\n    for _ in range(exp):\n        result *= base\n    return result\n",
     "tests": ["assert power(2, 10) == 1024", "assert power(5, 0) == 1", "assert power(3, 3) == 27"]},
    {"name": "last", "request": "Write a Python function last(values) returning the last item, or None for an empty list.",
     "solution": "def last(values):\n    if not values:\n        return None\n    return values[-1]\n",
     "tests": ["assert last([1, 2]) == 2", "assert last([]) is None", "assert last(['a']) == 'a'"]},
]


def load_tasks(path: str | Path | None = None) -> list[dict]:
    """The built-in tasks, or those of a JSONL file (fields: name, request, solution, tests)."""
    if path is None:
        return [dict(t) for t in BUILTIN_TASKS]
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"task file not found: {path}", "pass a JSONL file of {name, request, solution, tests}")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except ValueError as exc:
            raise TrainerError(f"{path}:{number} is not valid JSON ({exc.msg})", "one task object per line") from exc
        if not all(k in task for k in ("request", "solution", "tests")) or not isinstance(task["tests"], list):
            raise TrainerError(f"{path}:{number} lacks request, solution or a tests list", "one task object per line")
        task.setdefault("name", f"task{number}")
        tasks.append(task)
    if not tasks:
        raise TrainerError(f"task file {path} is empty", "add at least one task")
    return tasks


def task_prompt(task: dict) -> list[dict]:
    return [{"role": "user", "content": task["request"]}]


def code_reply(code: str) -> dict:
    """The assistant's answer carrying ``code`` (a fenced block, as the chat model writes code)."""
    return {"content": f"```python\n{code.rstrip()}\n```"}


class _Mutator(ast.NodeTransformer):
    """Applies the ``target``-th applicable mutation: the classic mutation-testing operators."""

    SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Lt: ast.LtE, ast.Gt: ast.GtE,
             ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.GtE: ast.Gt, ast.LtE: ast.Lt, ast.Mod: ast.FloorDiv,
             ast.Div: ast.FloorDiv, ast.In: ast.NotIn}

    def __init__(self, target: int) -> None:
        self.target, self.seen, self.done = target, 0, False

    def _hit(self) -> bool:
        hit = self.seen == self.target
        self.seen += 1
        if hit:
            self.done = True
        return hit

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if type(node.op) in self.SWAPS and self._hit():
            node.op = self.SWAPS[type(node.op)]()
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        if type(node.op) in self.SWAPS and self._hit():
            node.op = self.SWAPS[type(node.op)]()
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        if type(node.ops[0]) in self.SWAPS and self._hit():
            node.ops[0] = self.SWAPS[type(node.ops[0])]()
        return node

    def visit_Constant(self, node):
        if isinstance(node.value, int) and not isinstance(node.value, bool) and self._hit():
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def mutants(code: str, limit: int = 4) -> list[str]:
    """Up to ``limit`` distinct single-point mutations of ``code`` (some may still pass the tests:
    the sandbox decides)."""
    out: list[str] = []
    for target in range(64):
        tree = ast.parse(code)
        mutator = _Mutator(target)
        tree = mutator.visit(tree)
        if not mutator.done:
            break
        text = ast.unparse(ast.fix_missing_locations(tree)) + "\n"
        if text not in out and text.strip() != ast.unparse(ast.parse(code)).strip():
            out.append(text)
        if len(out) >= limit:
            break
    return out
