"""Mutation score of the modules whose bugs would mislead an analyst or let someone in (docs/RESULTS.md#mutation-score).

For each module, mutmut (3.x) plants one small bug at a time (a comparison flipped, a constant moved,
an argument dropped ...) and runs the fast test files that cover that module; a mutant the tests
do not notice *survives*. Each module runs in its own scratch copy of src/ and tests/ (under --work,
never in the checkout), with a [tool.mutmut] section written for that module only:

    source_paths / only_mutate        the module
    pytest_add_cli_args_test_selection its fast test files (no ../shared, no browser, no model training)

Where only part of a file is in scope (the index's filter code, the serve guard), every other function
of the copy gets mutmut's ``# pragma: no mutate block`` on its header, so it is neither mutated nor run.

Score = killed / (mutants - equivalent): a mutant listed in EQUIVALENT (below, with the reason)
behaves exactly as the original for every input the code can receive, so no test can kill it.
Timeouts count as killed (the mutant made the code hang or crawl). Not run in CI: a full run takes
tens of minutes on one core.

    nice -n 10 python3 benchmarks/mutation.py                      # every module
    nice -n 10 python3 benchmarks/mutation.py naming formulas      # some
    python3 benchmarks/mutation.py --list                          # what is measured, with which tests
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: name -> (file under src/, functions in scope or None for the whole file, pytest selection)
MODULES: dict[str, tuple[str, set[str] | None, list[str]]] = {
    "naming": ("xreid/explain/naming.py", None,
               ["tests/test_naming.py", "tests/test_analyst_report.py", "-k", "not report_structure and not top10"]),
    "formulas": ("xreid/explain/formulas.py", None,
                 ["tests/test_formulas.py", "tests/test_properties.py", "-k", "decomposition or formulas"]),
    "calibration": ("xreid/explain/calibration.py", None,
                    ["tests/test_calibration.py", "tests/test_analyst_report.py", "-k",
                     "not report_structure and not top10"]),
    "distance": ("xreid/distance.py", None,
                 ["tests/test_distance.py", "tests/test_formulas.py", "tests/test_metrics.py"]),
    "metrics": ("xreid/evaluation/metrics.py", None,
                ["tests/test_metrics.py", "tests/test_interpreter_eval.py", "tests/test_analyst_report.py", "-k",
                 "not report_structure and not top10"]),
    "match_probability": ("xreid/explain/match_probability.py", None,
                          ["tests/test_match_probability.py", "-k", "not cli"]),
    "index_filter": ("xreid/index/gallery.py",
                     {"encode_probabilities", "threshold_code", "is_empty", "_as_list", "_codes_in", "_top_k", "mask"},
                     ["tests/test_index.py", "tests/test_properties.py", "-k",
                      "filters or ann_search or commutes or length"]),
    "serve_guard": ("xreid/serve/app.py",
                    {"is_loopback", "check_bind", "Guard", "__init__", "__call__", "limited_receive", "secured_send",
                     "_authorised", "_send", "_send_json"},
                    ["tests/test_serve_guard.py", "tests/test_serve.py", "-k", "guard or loopback"]),
}

#: mutmut key -> why the mutant is equivalent (reviewed by hand; see docs/RESULTS.md#mutation-score)
EQUIVALENT: dict[str, str] = {}

STATUS = re.compile(r"^\s+(\S+): (.+)$")


def _exclude_other_functions(path: Path, keep: set[str]) -> int:
    """Append ``# pragma: no mutate block`` to the header of every function or class not in ``keep``
    (methods and nested functions of a kept class or function stay in scope). Returns how many."""
    source = path.read_text()
    tree = ast.parse(source)
    headers: list[int] = []  # 1-based line of each excluded header's last line (the one with the colon)

    def visit(node, inside_kept: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kept = inside_kept or child.name in keep
                if not kept:
                    headers.append(child)
                else:
                    visit(child, True)
            else:
                visit(child, inside_kept)

    visit(tree, False)
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    marks = set()
    for node in headers:
        first = node.lineno  # the def / class line (decorators come before it)
        depth, seen_def = 0, False
        for tok in tokens:
            if tok.start[0] < first:
                continue
            if tok.type == tokenize.NAME and tok.string in ("def", "class") and not seen_def:
                seen_def = True
                continue
            if not seen_def:
                continue
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
            elif tok.type == tokenize.OP and tok.string == ":" and depth == 0:
                marks.add(tok.start[0])
                break
    for ln in marks:
        line = lines[ln - 1].rstrip("\n")
        assert "#" not in line.split(":")[-1], f"{path}:{ln} already ends in a comment"
        lines[ln - 1] = line + "  # pragma: no mutate block\n"
    path.write_text("".join(lines))
    return len(marks)


def _config(module: str, selection: list[str], jobs: int) -> str:
    quote = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    return (f"\n[tool.mutmut]\nsource_paths = [\"src\"]\nonly_mutate = [{json.dumps('src/' + module)}]\n"
            f"pytest_add_cli_args = {quote(['-q', '-p', 'no:cacheprovider'])}\n"
            f"pytest_add_cli_args_test_selection = {quote(selection)}\n"
            f"use_git_change_detection = false\ntimeout_multiplier = 5.0\n")


def run_module(name: str, work: Path, jobs: int) -> dict:
    module, keep, selection = MODULES[name]
    scratch = work / name
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    shutil.copytree(REPO / "src", scratch / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "tests", scratch / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (REPO / "pyproject.toml").read_text()
    (scratch / "pyproject.toml").write_text(pyproject + _config(module, selection, jobs))
    excluded = _exclude_other_functions(scratch / "src" / module, keep) if keep else 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(scratch / "src"),
           "XREID_SHARED": str(scratch / "no-shared")}  # never read ../shared from a mutation run
    start = time.time()
    run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)], cwd=scratch, env=env,
                         capture_output=True, text=True)
    seconds = time.time() - start
    (scratch / "mutmut-run.log").write_text(run.stdout + run.stderr)
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=scratch, env=env,
                         capture_output=True, text=True)
    statuses = {m.group(1): m.group(2) for m in map(STATUS.match, res.stdout.splitlines()) if m}
    if not statuses:
        raise SystemExit(f"{name}: mutmut produced no results; see {scratch / 'mutmut-run.log'}:\n"
                         + (run.stdout + run.stderr)[-3000:])
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted(k for k, s in statuses.items() if s not in ("killed", "timeout") and k not in EQUIVALENT)
    equivalent = sorted(k for k in statuses if k in EQUIVALENT)
    diffs = {}
    for key in survivors + equivalent:
        show = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=scratch, env=env, capture_output=True,
                              text=True)
        diffs[key] = show.stdout
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    total = len(statuses)
    score = 100.0 * killed / max(total - len(equivalent), 1)
    return {"module": module, "functions": sorted(keep) if keep else "all", "excluded_functions": excluded,
            "tests": selection, "mutants": total, "killed": killed, "timeout": counts.get("timeout", 0),
            "equivalent": len(equivalent), "survived": len(survivors), "statuses": counts, "score": round(score, 1),
            "seconds": round(seconds), "survivors": {k: diffs[k] for k in survivors},
            "equivalents": {k: EQUIVALENT[k] for k in equivalent}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", help=f"some of: {', '.join(MODULES)} (default: all)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "xreid-mutation",
                    help="scratch folder for the copies (default: $TMPDIR/xreid-mutation)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    ap.add_argument("--json", type=Path, help="write every figure and each survivor's diff here")
    ap.add_argument("--list", action="store_true", help="print what would be measured and exit")
    args = ap.parse_args()
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if args.list:
        for n in names:
            module, keep, selection = MODULES[n]
            print(f"{n}: src/{module} [{', '.join(sorted(keep)) if keep else 'all functions'}] <- {' '.join(selection)}")
        return
    results = {}
    print(f"{'module':<18} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'score':>6} {'time':>6}")
    for n in names:
        r = results[n] = run_module(n, args.work, args.jobs)
        print(f"{n:<18} {r['mutants']:>7} {r['killed']:>6} {r['equivalent']:>5} {r['survived']:>8} "
              f"{r['score']:>5.1f}% {r['seconds']:>5}s", flush=True)
        for key, diff in r["survivors"].items():
            print(f"  survived: {key}\n" + "".join(f"    {line}\n" for line in diff.splitlines()
                                                    if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    killed = sum(r["killed"] for r in results.values())
    scored = sum(r["mutants"] - r["equivalent"] for r in results.values())
    print(f"{'all':<18} {sum(r['mutants'] for r in results.values()):>7} {killed:>6} "
          f"{sum(r['equivalent'] for r in results.values()):>5} {sum(r['survived'] for r in results.values()):>8} "
          f"{100.0 * killed / max(scored, 1):>5.1f}%")


if __name__ == "__main__":
    main()
