"""The package's structure rules, checked on the source: import directions, one place per decision, no function
longer than about 60 lines without a written reason, and comments that cite only what ships with the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ptdit"
MAX_FUNCTION_LINES = 60  # lines of a function without its docstring
LONG_REASON = "long function:"  # a comment with this, beside the def, says why a function is longer


def _modules(subpackage: str = "") -> list[Path]:
    return sorted((SRC / subpackage).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports, at top level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("train", ("ptdit.sampling", "ptdit.eval", "ptdit.cli", "ptdit.bench")),
        (
            "models",
            ("ptdit.diffusion", "ptdit.train", "ptdit.encoders", "ptdit.interop", "ptdit.sampling", "ptdit.recipe"),
        ),
        ("diffusion", ("ptdit.models", "ptdit.train", "ptdit.sampling", "ptdit.encoders", "ptdit.recipe")),
        ("sampling", ("ptdit.train", "ptdit.cli")),
        ("recipe", ("ptdit.models", "ptdit.train", "ptdit.sampling", "ptdit.cli")),
        ("data", ("ptdit.eval", "ptdit.train", "ptdit.sampling", "ptdit.cli")),
        # the studies sit on top of the library (train, eval, sampling) and below the CLI
        ("study", ("ptdit.cli", "ptdit.bench", "ptdit.interop")),
        # ...and nothing in the library depends on them
        *[(name, ("ptdit.study",)) for name in ("models", "train", "eval", "sampling", "data", "recipe", "nn")],
    ],
)
def test_import_direction(package, forbidden):
    bad = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name.startswith(forbidden)
    }
    assert not bad, sorted(bad)


MODEL_INTERNALS = {"layout", "pos_embed", "transformer_blocks", "adaln_single", "caption_projection", "label_embedder"}


def test_nothing_outside_models_reaches_into_a_model():
    """Other packages use a model's config, forward and `block_list()`, never its sub-modules (nn/ defines
    the embedding modules those names come from)."""
    bad = []
    for path in _modules():
        if path.relative_to(SRC).parts[0] in ("models", "nn"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in MODEL_INTERNALS:
                bad.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}")
    assert not bad, bad


def _string_literals(path: Path) -> set[str]:
    return {
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


@pytest.mark.parametrize(
    ("names", "owners"),
    [
        # Task names are tested only in the recipe layer; the demo names its configs per task.
        ({"t2v", "t2mv"}, ("recipe/", "cli/demo.py")),
        # Objective names map to schedule / prediction / loss only in the objective module.
        ({"flow-x0", "vp-v", "vp-eps"}, ("recipe/objective.py",)),
    ],
)
def test_each_decision_is_made_in_one_place(names, owners):
    bad = sorted(
        str(path.relative_to(SRC))
        for path in _modules()
        if not str(path.relative_to(SRC)).startswith(owners) and _string_literals(path) & names
    )
    assert not bad, f"{sorted(names)} appear outside {owners}: {bad}"


def test_paper_window_rule_lives_in_the_recipe():
    owners = [p for p in _modules() if "WINDOWS_PER_SIDE =" in p.read_text()]
    assert [str(p.relative_to(SRC)) for p in owners] == ["recipe/windows.py"]


def test_no_function_is_long_without_a_reason():
    long = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                body = node.body[0]
                if isinstance(body, ast.Expr) and isinstance(getattr(body, "value", None), ast.Constant):
                    length -= body.end_lineno - body.lineno + 1  # the docstring does not count
                start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                nearby = "\n".join(lines[max(start - 4, 0) : node.lineno + 1])
                if length > MAX_FUNCTION_LINES and LONG_REASON not in nearby:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_comments_cite_only_what_ships():
    """Code cites docs/ or the paper, never a document outside the repository."""
    bad = [
        f"{path.relative_to(SRC)}:{i}"
        for path in _modules()
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bSPEC\b", line) or "../shared" in line
    ]
    assert not bad, bad


def test_cited_docs_exist():
    docs = SRC.parents[1] / "docs"
    cited = set()
    for path in _modules():
        for word in path.read_text().replace("(", " ").replace(")", " ").replace(",", " ").split():
            if word.startswith("docs/") and ".md" in word:
                cited.add(word.split("#")[0].rstrip(".;:'\""))
    missing = sorted(c for c in cited if not (docs.parent / c).is_file())
    assert not missing, missing


def test_tests_read_fixtures_only_from_the_repository():
    """Every fixture a test reads is committed under tests/fixtures (conftest.FIXTURES), so a clone without the
    project's shared folder beside it runs every test: no test names a path outside the repository."""
    tests = Path(__file__).resolve().parent
    bad = [
        f"{path.relative_to(tests)}:{i}"
        for path in sorted(tests.rglob("*.py"))
        if path != Path(__file__).resolve()
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if "../shared" in line or "shared/fixtures" in line or "parents[3]" in line
    ]
    assert not bad, bad
    assert (tests / "fixtures" / "README.md").is_file()
