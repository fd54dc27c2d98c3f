"""The layers import one way, down (README's layout): a module may import from its own package and
from packages of a lower rank only. ``explain`` and ``evaluation`` share a rank, so neither imports
the other; ``index`` sits above them (its description search scores with ``explain``'s formulas),
so ``explain`` never imports ``index``; ``explain`` computes and opens no file (its artefacts go through
``xreid.io``); the CLI holds options and messages only."""

import ast
from pathlib import Path

import xreid

SRC = Path(xreid.__file__).parent
RANK = {
    "errors": 0, "io": 0, "paths": 0, "distance": 0, "binding": 0.5,
    "data": 1,
    "models": 2,
    "explain": 3, "evaluation": 3, "index": 3.5,
    "training": 4, "rendering": 4,
    "workflows": 5,
    "serve": 6,
    "cli_options": 7, "cli_index": 7.5, "cli": 8,
    "__init__": 9,
}
#: what opens files; explain/ must call none of these
FILE_CALLS = ("open", "load", "savez", "read_text", "read_bytes", "write_text", "write_bytes", "atomic_write",
              "atomic_open", "imread")


#: every module's syntax tree, parsed once while the tests are collected: CPython 3.11's ``ast.parse``
#: can raise "AST constructor recursion depth mismatch" when another thread parses at the same time
#: (the server tests leave worker threads behind), so no test parses while others run
TREES = {path: ast.parse(path.read_text(), str(path)) for path in sorted(SRC.rglob("*.py"))}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    for node in ast.walk(TREES[path]):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xreid":
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "xreid":
                    yield node.lineno, alias.name


def layer_violations() -> list[str]:
    out = []
    for path in TREES:
        here = _package(path)
        for line, module in _imports(path):
            parts = module.split(".")
            there = parts[1] if len(parts) > 1 else "__init__"
            if there != here and RANK[there] >= RANK[here]:
                out.append(f"{path.relative_to(SRC)}:{line} imports {module} ({here} -> {there})")
    return out


def test_every_package_has_a_rank():
    assert {_package(p) for p in SRC.rglob("*.py")} <= set(RANK)


def test_imports_run_down_the_layers():
    assert layer_violations() == []


def test_explain_opens_no_file():
    calls = []
    for path in sorted((SRC / "explain").rglob("*.py")):
        for node in ast.walk(TREES[path]):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in FILE_CALLS:
                    calls.append(f"{path.relative_to(SRC)}:{node.lineno} {name}(")
    assert calls == []


def test_domain_code_knows_nothing_of_http():
    """The case session, the index and the workflows raise domain errors; only ``serve/app.py`` maps
    them to HTTP."""
    for path in [SRC / "serve" / "case.py", *sorted(SRC.glob("index/*.py")), *sorted(SRC.glob("workflows/*.py"))]:
        modules = {a.name for n in ast.walk(TREES[path]) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module or "" for n in ast.walk(TREES[path]) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] in ("fastapi", "starlette") for m in modules), path
        assert "HTTPException" not in path.read_text(), path


def test_the_command_line_holds_options_and_messages():
    assert len((SRC / "cli.py").read_text().splitlines()) < 500
    for name in ("cli.py", "cli_index.py", "cli_options.py"):  # no construction of models, indexes, sessions
        text = (SRC / name).read_text()
        for built in ("load_embedder(", "AttributeHead.load(", "GalleryIndex(", "CaseSession(", "load_protocol("):
            assert built not in text, (name, built)


if __name__ == "__main__":  # the tiny check script: python3 tests/test_layers.py
    print("\n".join(layer_violations()) or "imports run down the layers")
