"""Small sample projects the tool-calling generator runs real tools on.

Each project is a package of a few functions (picked from a pool, under one of several names),
a test file (a seeded share of the projects carry one injected bug, so their tests fail), a
README, and a few real modules copied from this machine's Python standard library (so file
reads, searches and analyses run on real code). Training and held-out projects use disjoint
function names, package names and standard-library files.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import importlib.util
import keyword
import random
import re
import sys
import sysconfig
import warnings
from dataclasses import dataclass, field
from pathlib import Path

# name variants | source (NAME is replaced) | tests (NAME replaced) | bug: (old, new) in the source
FUNCTIONS: list[dict] = [
    {"names": ["add", "plus", "sum_two", "add_numbers", "combine"], "src": "def NAME(a, b):\n    return a + b\n",
         "tests": "def test_NAME():\n    assert NAME(2, 3) == 5\n    assert NAME(-1, 1) == 0\n", "bug": ("a + b", "a - b")},
    {"names": ["clamp", "bound", "limit_value", "clip", "restrict"],
         "src": "def NAME(value, low, high):\n    if value < low:\n        return low\n    if value > high:\n        return high\n    return value\n",
         "tests": "def test_NAME():\n    assert NAME(5, 0, 10) == 5\n    assert NAME(-3, 0, 10) == 0\n    assert NAME(42, 0, 10) == 10\n",
         "bug": ("return high", "return low")},
    {"names": ["word_count", "count_words", "n_words", "words_in", "tally_words"],
         "src": "def NAME(text):\n    return len(text.split())\n",
         "tests": "def test_NAME():\n    assert NAME('a b c') == 3\n    assert NAME('') == 0\n", "bug": ("len(text.split())", "len(text.split(' '))")},
    {"names": ["is_palindrome", "palindrome", "reads_same_backwards", "is_mirror", "symmetric_word"],
         "src": "def NAME(word):\n    word = word.lower()\n    return word == word[::-1]\n",
         "tests": "def test_NAME():\n    assert NAME('Level')\n    assert not NAME('python')\n", "bug": ("word = word.lower()", "word = word")},
    {"names": ["celsius_to_fahrenheit", "c_to_f", "to_fahrenheit", "fahrenheit", "convert_temp"],
         "src": "def NAME(celsius):\n    return celsius * 9 / 5 + 32\n",
         "tests": "def test_NAME():\n    assert NAME(100) == 212\n    assert NAME(0) == 32\n", "bug": ("* 9 / 5 + 32", "* 5 / 9 + 32")},
    {"names": ["median", "middle_value", "midpoint_of", "median_of", "central_value"],
         "src": "def NAME(values):\n    ordered = sorted(values)\n    mid = len(ordered) // 2\n    if len(ordered) % 2:\n        return ordered[mid]\n    return (ordered[mid - 1] + ordered[mid]) / 2\n",
         "tests": "def test_NAME():\n    assert NAME([3, 1, 2]) == 2\n    assert NAME([4, 1, 3, 2]) == 2.5\n", "bug": ("sorted(values)", "list(values)")},
    {"names": ["factorial", "fact", "product_upto", "n_factorial", "factorial_of"],
         "src": "def NAME(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
         "tests": "def test_NAME():\n    assert NAME(5) == 120\n    assert NAME(0) == 1\n", "bug": ("range(2, n + 1)", "range(2, n)")},
    {"names": ["slugify", "make_slug", "to_slug", "url_name", "slug_of"],
         "src": "def NAME(title):\n    words = title.lower().split()\n    return '-'.join(words)\n",
         "tests": "def test_NAME():\n    assert NAME('Hello World') == 'hello-world'\n", "bug": ("'-'.join(words)", "'_'.join(words)")},
    {"names": ["fizzbuzz", "fizz_buzz", "fb_value", "fizz_word", "buzz_or_number"],
         "src": "def NAME(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)\n",
         "tests": "def test_NAME():\n    assert NAME(9) == 'Fizz'\n    assert NAME(10) == 'Buzz'\n    assert NAME(30) == 'FizzBuzz'\n    assert NAME(7) == '7'\n",
         "bug": ("n % 15 == 0", "n % 15 == 1")},
    {"names": ["average", "mean", "mean_of", "avg", "arithmetic_mean"],
         "src": "def NAME(values):\n    if not values:\n        return 0\n    return sum(values) / len(values)\n",
         "tests": "def test_NAME():\n    assert NAME([2, 4, 6]) == 4\n    assert NAME([]) == 0\n", "bug": ("sum(values) / len(values)", "sum(values) / (len(values) + 1)")},
    {"names": ["reverse_words", "flip_words", "backwards_sentence", "words_reversed", "invert_order"],
         "src": "def NAME(sentence):\n    return ' '.join(reversed(sentence.split()))\n",
         "tests": "def test_NAME():\n    assert NAME('one two three') == 'three two one'\n", "bug": ("reversed(sentence.split())", "sentence.split()")},
    {"names": ["count_vowels", "vowel_count", "num_vowels", "vowels_in", "tally_vowels"],
         "src": "def NAME(text):\n    return sum(1 for ch in text.lower() if ch in 'aeiou')\n",
         "tests": "def test_NAME():\n    assert NAME('Banana') == 3\n    assert NAME('tuba') == 2\n    assert NAME('xyz') == 0\n", "bug": ("in 'aeiou'", "in 'aeio'")},
    {"names": ["is_even", "even", "divisible_by_two", "check_even", "is_pair"],
         "src": "def NAME(n):\n    return n % 2 == 0\n",
         "tests": "def test_NAME():\n    assert NAME(4)\n    assert not NAME(7)\n", "bug": ("n % 2 == 0", "n % 2 == 1")},
    {"names": ["gcd", "greatest_divisor", "common_divisor", "hcf", "gcd_of"],
         "src": "def NAME(a, b):\n    while b:\n        a, b = b, a % b\n    return abs(a)\n",
         "tests": "def test_NAME():\n    assert NAME(12, 18) == 6\n    assert NAME(7, 5) == 1\n", "bug": ("a, b = b, a % b", "a, b = b, a // b")},
    # more shapes of argument and result (strings, lists of strings, dicts, booleans), so calling a
    # function means copying its arguments as written, whatever they look like
    {"names": ["initials", "first_letters", "acronym", "make_initials", "abbreviate"],
         "src": "def NAME(text):\n    return ''.join(word[0] for word in text.split()).upper()\n",
         "tests": "def test_NAME():\n    assert NAME('portable network graphics') == 'PNG'\n", "bug": (").upper()", ").lower()")},
    {"names": ["repeat_text", "echo_times", "say_n_times", "repeated", "multiply_text"],
         "src": "def NAME(text, times):\n    return ' '.join([text] * times)\n",
         "tests": "def test_NAME():\n    assert NAME('ho', 3) == 'ho ho ho'\n", "bug": ("[text] * times", "[text] * (times - 1)")},
    {"names": ["squares", "square_all", "squared_values", "map_square", "square_each"],
         "src": "def NAME(values):\n    return [v * v for v in values]\n",
         "tests": "def test_NAME():\n    assert NAME([1, 2, 3]) == [1, 4, 9]\n", "bug": ("v * v", "v + v")},
    {"names": ["letter_counts", "char_frequency", "count_letters", "letter_histogram", "tally_chars"],
         "src": "def NAME(word):\n    counts = {}\n    for ch in word:\n        counts[ch] = counts.get(ch, 0) + 1\n    return counts\n",
         "tests": "def test_NAME():\n    assert NAME('aab') == {'a': 2, 'b': 1}\n", "bug": ("counts.get(ch, 0) + 1", "counts.get(ch, 1)")},
    {"names": ["digit_sum", "sum_digits", "add_digits", "digits_total", "cross_sum"],
         "src": "def NAME(number):\n    return sum(int(d) for d in str(abs(number)))\n",
         "tests": "def test_NAME():\n    assert NAME(1234) == 10\n    assert NAME(-56) == 11\n", "bug": ("str(abs(number))", "str(number)[1:]")},
    {"names": ["is_prime", "prime", "check_prime", "prime_number", "is_prime_number"],
         "src": "def NAME(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n            return False\n    return True\n",
         "tests": "def test_NAME():\n    assert NAME(13)\n    assert not NAME(49)\n    assert not NAME(1)\n", "bug": ("int(n ** 0.5) + 1", "int(n ** 0.5)")},
    {"names": ["zero_pad", "pad_number", "left_pad", "padded", "fixed_width"],
         "src": "def NAME(number, width):\n    return str(number).zfill(width)\n",
         "tests": "def test_NAME():\n    assert NAME(42, 5) == '00042'\n", "bug": ("zfill(width)", "zfill(width - 1)")},
    {"names": ["largest", "biggest", "max_value", "top_value", "highest"],
         "src": "def NAME(values):\n    best = values[0]\n    for v in values[1:]:\n        if v > best:\n            best = v\n    return best\n",
         "tests": "def test_NAME():\n    assert NAME([3, 9, 4]) == 9\n", "bug": ("if v > best", "if v < best")},
    {"names": ["chunked", "split_chunks", "batches", "chunk_list", "in_groups"],
         "src": "def NAME(values, size):\n    return [values[i:i + size] for i in range(0, len(values), size)]\n",
         "tests": "def test_NAME():\n    assert NAME([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]\n", "bug": ("values[i:i + size]", "values[i:i + size - 1]")},
    {"names": ["minutes_label", "format_minutes", "hours_minutes", "duration_text", "as_hours"],
         "src": "def NAME(minutes):\n    return f'{minutes // 60}h {minutes % 60}m'\n",
         "tests": "def test_NAME():\n    assert NAME(135) == '2h 15m'\n", "bug": ("minutes % 60", "minutes % 100")},
    {"names": ["swap_case", "invert_case", "flip_case", "toggle_case", "case_swapped"],
         "src": "def NAME(text):\n    return text.swapcase()\n",
         "tests": "def test_NAME():\n    assert NAME('PyThon') == 'pYtHON'\n", "bug": ("text.swapcase()", "text.upper()")},
    {"names": ["total_length", "combined_length", "sum_lengths", "chars_total", "length_of_all"],
         "src": "def NAME(items):\n    return sum(len(item) for item in items)\n",
         "tests": "def test_NAME():\n    assert NAME(['ab', 'cde']) == 5\n", "bug": ("len(item)", "len(item) - 1")},
    {"names": ["count_above", "how_many_above", "above_limit", "count_greater", "n_over"],
         "src": "def NAME(values, limit):\n    return sum(1 for v in values if v > limit)\n",
         "tests": "def test_NAME():\n    assert NAME([1, 5, 10], 4) == 2\n", "bug": ("v > limit", "v >= limit + 5")},
    {"names": ["first_sorted", "alphabetically_first", "min_word", "earliest_word", "first_in_order"],
         "src": "def NAME(words):\n    return sorted(words)[0]\n",
         "tests": "def test_NAME():\n    assert NAME(['pear', 'apple', 'fig']) == 'apple'\n", "bug": ("sorted(words)[0]", "sorted(words)[-1]")},
]

PACKAGES = ["toolbox", "helpers", "mathkit", "textkit", "utilities", "corelib", "appcore", "shared", "kit", "lib_tools",
            "common_utils", "minitools", "pyhelpers", "basics", "funcs", "snippets", "workbench", "devkit", "inventory",
            "billing", "weather", "library", "scheduler", "grades", "recipes", "payroll", "garden", "fleet", "survey",
            "ledger", "tickets", "catalog", "metrics", "orders", "playlist", "clinic", "warehouse", "studio", "atlas",
            "quiz", "budget", "roster"]
MODULE_NAMES = ["ops", "numbers", "strings", "misc", "logic", "calc", "text", "tools", "core", "funcs", "utils", "helpers",
                "math_utils", "convert", "checks", "stats", "format", "parsing", "rules", "compute"]
# decorations that turn a pool name into more names (calc_add, median_value, ...): many names, so the
# model must copy a function's name from the request and the repository summary instead of recalling it
NAME_PREFIXES = ["", "calc_", "get_", "compute_", "do_", "my_", "find_", "make_"]
NAME_SUFFIXES = ["", "_value", "_result", "_of", "_fn"]

WORDS_FOR_DOCS = ["numbers", "text", "dates", "lists", "strings", "reports", "orders", "files", "scores", "names",
                  "records", "prices", "words", "values", "messages", "labels"]

# small, self-contained standard-library modules: real code to read, search and analyse
STDLIB_CANDIDATES = ["bisect.py", "colorsys.py", "keyword.py", "fnmatch.py", "glob.py", "textwrap.py", "shlex.py",
                     "stat.py", "this.py", "sched.py", "graphlib.py", "numbers.py", "reprlib.py", "queue.py",
                     "copy.py", "cmd.py", "heapq.py", "netrc.py", "mimetypes.py", "filecmp.py", "getopt.py",
                     "abc.py", "calendar.py", "string.py", "tabnanny.py", "nturl2path.py", "operator.py",
                     "quopri.py", "uu.py", "wave.py", "chunk.py", "sndhdr.py", "imghdr.py", "linecache.py"]


@dataclass
class ProjectFunction:
    name: str
    module: str  # dotted, e.g. toolbox.ops
    path: str  # toolbox/ops.py
    line: int
    pool_index: int
    buggy: bool


@dataclass
class SampleProject:
    name: str
    root: Path
    package: str
    functions: list[ProjectFunction] = field(default_factory=list)
    stdlib_files: list[str] = field(default_factory=list)  # relative paths of copied modules
    test_file: str = ""  # the first of test_files
    test_files: list[str] = field(default_factory=list)
    bug: str | None = None  # name of the buggy function, if any

    def module_paths(self) -> list[str]:
        """The package's modules that hold the project's functions, in order."""
        return list(dict.fromkeys(f.path for f in self.functions))

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def defined_names(self, relpath: str) -> list[tuple[str, int]]:
        """(function or class name, line) defined at the top level of a file."""
        tree = ast.parse((self.root / relpath).read_text(encoding="utf-8"))
        return [(n.name, n.lineno) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def _split_of(value: str, salt: str) -> str:
    """A stable train/heldout assignment of a value (about one in four held out)."""
    digest = hashlib.sha256(f"{salt}:{value}".encode()).digest()
    return "heldout" if digest[0] % 4 == 0 else "train"


def name_pool(index: int, split: str) -> list[str]:
    """Function names of pool entry ``index`` usable in ``split`` (disjoint between the splits)."""
    names = sorted({f"{prefix}{name}{suffix}" for name in FUNCTIONS[index]["names"]
                    for prefix in NAME_PREFIXES for suffix in NAME_SUFFIXES
                    if not (prefix and suffix)})  # one decoration at most: calc_add or add_value, not calc_add_value
    return [n for n in names if _split_of(n, "function") == split]


FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "eval_fixtures"


@functools.cache
def _real_identifiers() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Real snake_case function names and single-word module names from this machine's standard
    library (thousands), minus every name the eval fixtures define, so no eval task is trained on."""
    root = Path(sysconfig.get_paths()["stdlib"])
    fixture_files = sorted(FIXTURES.rglob("*.py"))  # none when the tests are not shipped
    reserved = {n.id if isinstance(n, ast.Name) else n.name for path in fixture_files
                for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Name))}
    reserved |= {p.stem for p in FIXTURES.rglob("*") if p.is_dir() or p.suffix == ".py"}
    functions = set()
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        try:
            with warnings.catch_warnings():  # old modules' invalid escapes ('\(') warn while parsing
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.11 names it so
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if (isinstance(node, ast.FunctionDef) and re.fullmatch(r"[a-z]+(_[a-z]+){1,2}", node.name)
                    and 6 <= len(node.name) <= 24 and not node.name.startswith("test")):  # pytest would collect test_*
                functions.add(node.name)
    keyword_like = set(keyword.kwlist) | set(dir(builtins))
    functions -= reserved | keyword_like
    # module and package names: the words of those names, never a module Python could import instead
    # (a package called `argparse` would shadow the standard library's in the sandbox's pytest)
    shadowing = set(sys.stdlib_module_names) | {"test", "tests", "pytest", "conftest", "setup", "main"}
    modules = {w for name in functions for w in name.split("_") if re.fullmatch(r"[a-z]{4,10}", w)}
    modules -= shadowing | reserved | keyword_like
    modules = {w for w in modules if importlib.util.find_spec(w) is None}
    return tuple(sorted(functions)), tuple(sorted(modules))


def identifier_pool(split: str, kind: str = "function") -> list[str]:
    """Real identifiers usable as function (or module/package) names in ``split``, disjoint between
    the splits: so many that a name is seldom seen twice, and copying it is the only way to get it right."""
    functions, modules = _real_identifiers()
    names = functions if kind == "function" else modules
    return [n for n in names if _split_of(n, f"identifier-{kind}") == split]


def stdlib_files(split: str) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    chosen = [root / n for n in STDLIB_CANDIDATES if (root / n).is_file() and (root / n).stat().st_size < 40_000]
    return [p for p in chosen if _split_of(p.name, "stdlib") == split]


MODULE_DOCS = ["Small helpers.", "Helpers for {words}.", "{Words} utilities.", "Functions for {words}.",
               "{Words}: a few small functions.", "Utility code ({words}).", "Common {words} operations."]
EXTRA_FILES = {"requirements.txt": "pytest\n", "setup.cfg": "[metadata]\nname = {package}\n",
               "CHANGELOG.md": "# Changes\n\n- first release\n", "docs/usage.md": "# Using {package}\n\nImport it.\n",
               "pyproject.toml": "[project]\nname = \"{package}\"\nversion = \"0.1.0\"\n", ".gitignore": "__pycache__/\n"}


def build_projects(root: Path, split: str, count: int, seed: int) -> list[SampleProject]:
    """``count`` projects under ``root`` for ``split``; deterministic for a seed.

    Layouts vary (one to three modules in the package, each with its own test file, zero to three
    vendored standard-library files, a few optional extra files, module and function docstrings
    now and then), so file counts, line numbers and which module holds a function must be read
    from the project, never recalled."""
    rng = random.Random(f"{seed}:{split}:projects")
    packages = [p for p in PACKAGES if _split_of(p, "package") == split] or PACKAGES[:1]
    words = identifier_pool(split, "module")
    identifiers = identifier_pool(split)
    stdlib = stdlib_files(split)
    projects = []
    for number in range(count):
        # half the projects take their package and module names from the large pool of real words
        package = packages[number % len(packages)] if number % 2 == 0 or not words else rng.choice(words)
        name = f"{split}-project-{number}"
        project_root = root / name
        project_root.mkdir(parents=True, exist_ok=True)
        n_modules = rng.choice([1, 1, 2, 2, 3])
        modules: list[str] = []
        while len(modules) < n_modules:
            module = rng.choice(MODULE_NAMES) if rng.random() < 0.5 or not words else rng.choice(words)
            if module not in modules and module != package:
                modules.append(module)
        picks = rng.sample(range(len(FUNCTIONS)), rng.randint(max(2, n_modules), 5))
        buggy_index = rng.choice(picks) if number % 2 == 0 else None
        project = SampleProject(name=name, root=project_root, package=package)
        pkg_dir = project_root / package
        pkg_dir.mkdir(exist_ok=True)
        (pkg_dir / "__init__.py").write_text("")
        (project_root / "tests").mkdir(exist_ok=True)
        # every module gets at least one function, the rest go anywhere
        owners = modules + [rng.choice(modules) for _ in range(len(picks) - len(modules))]
        rng.shuffle(owners)
        for module in modules:
            source_parts, test_parts, functions = [], [], []
            line = 1
            if rng.random() < 0.5:
                doc_words = " ".join(rng.sample(WORDS_FOR_DOCS, 2))
                doc = rng.choice(MODULE_DOCS).format(words=doc_words, Words=doc_words.capitalize())
                source_parts.append(f'"""{doc}"""\n')
                line += 3
            for index, owner in zip(picks, owners):
                if owner != module:
                    continue
                # half the functions get a real identifier from the large pool: a name seldom seen twice
                fname = rng.choice(identifiers) if identifiers and rng.random() < 0.5 else rng.choice(name_pool(index, split))
                while fname in {f.name for f in project.functions}:
                    fname = rng.choice(name_pool(index, split))
                src = FUNCTIONS[index]["src"].replace("NAME", fname)
                if rng.random() < 0.3:  # a one-line docstring under the signature
                    head, body = src.split("\n", 1)
                    src = f'{head}\n    """{fname.replace("_", " ").capitalize()}."""\n{body}'
                if index == buggy_index:
                    old, new = FUNCTIONS[index]["bug"]
                    src = src.replace(old, new, 1)
                    project.bug = fname
                function = ProjectFunction(fname, f"{package}.{module}", f"{package}/{module}.py", line, index,
                                           index == buggy_index)
                functions.append(function)
                source_parts.append(src)
                line += src.count("\n") + 2
                test_parts.append(FUNCTIONS[index]["tests"].replace("NAME", fname))
            project.functions.extend(functions)
            (pkg_dir / f"{module}.py").write_text("\n\n".join(source_parts))
            imports = ", ".join(f.name for f in functions)
            test_file = f"tests/test_{module}.py"
            project.test_files.append(test_file)
            (project_root / test_file).write_text(f"from {package}.{module} import {imports}\n\n\n" + "\n\n".join(test_parts))
        project.test_file = project.test_files[0]
        listed = ", ".join(f.name for f in project.functions)
        (project_root / "README.md").write_text(f"# {package}\n\nSmall helpers: {listed}.\n")
        for source in rng.sample(stdlib, min(rng.choice([0, 1, 2, 2, 3]), len(stdlib))):
            target = project_root / "vendor" / source.name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(source.read_bytes())
            project.stdlib_files.append(f"vendor/{source.name}")
        for extra in rng.sample(sorted(EXTRA_FILES), rng.choice([0, 0, 1, 2])):
            target = project_root / extra
            target.parent.mkdir(exist_ok=True)
            target.write_text(EXTRA_FILES[extra].format(package=package))
        for path in [project_root, *project_root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the sandbox's unprivileged uid
        projects.append(project)
    return projects
