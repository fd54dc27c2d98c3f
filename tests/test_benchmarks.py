"""The benchmarks stay runnable and their recorded results stay clean (fast; no data needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "common.py")
ABSOLUTE = re.compile(r"/(root|work|home|tmp)/")


def test_there_are_benchmarks():
    assert len(SCRIPTS) >= 5 and (BENCH / "run_all.sh").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_and_shows_help(script: Path):
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout and "--out" in done.stdout


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch):
    """Benchmarks import their shared helper as ``common`` (their folder is on sys.path when run)."""
    monkeypatch.syspath_prepend(str(BENCH))


def test_results_hold_no_absolute_paths():
    files = sorted(p for p in RESULTS.iterdir() if p.is_file())
    assert files
    bad = {p.name: m.group(0) for p in files if (m := ABSOLUTE.search(p.read_text(errors="replace")))}
    assert not bad, f"absolute machine paths in recorded results: {bad}"


def test_run_all_produces_exactly_the_kept_results():
    """Every kept result comes from a command of run_all.sh, and every benchmark runs there, writing
    into benchmarks/results/ (its outputs appear there once it has run)."""
    script = (BENCH / "run_all.sh").read_text()
    produced = set(re.findall(r'--out "\$out/([\w.-]+)"', script))
    kept = {p.name.rsplit(".", 1)[0] for p in RESULTS.iterdir() if p.is_file()}
    assert not kept - produced, f"results no command in run_all.sh produces: {sorted(kept - produced)}"
    commands = [line for line in script.splitlines() if re.match(r"\s*run python ", line)]
    assert len(commands) == len(produced), "each command of run_all.sh writes its own --out \"$out/NAME\""
    called = {m for line in commands for m in re.findall(r"benchmarks/(\w+\.py)", line)}
    missing = sorted({p.name for p in SCRIPTS} - called)
    assert not missing, f"benchmarks run_all.sh does not run: {missing}"


def test_relative_paths_for_the_record(tmp_path):
    import common
    from xreid.models.loading import BUNDLED_HEAD

    assert common.relative(BUNDLED_HEAD) == "src/xreid/weights/default_head.npz"
    assert common.relative(common.M0277).startswith("SHARED/models/openvino/person-reidentification-retail-0277/")
    assert common.relative(common.resolve_data_root(None) / "peta" / "x.jpg") == "DATA_ROOT/peta/x.jpg"
    elsewhere = common.relative(tmp_path / "model.onnx")
    assert elsewhere.endswith("model.onnx") and not elsewhere.startswith("/")
    assert common.relative("runs/x/last.pt") == "runs/x/last.pt"
    assert not ABSOLUTE.search(common.relative(Path.home() / "elsewhere" / "f.txt"))


def test_report_writes_text_and_figures(tmp_path, capsys):
    import json

    import common

    report = common.Report(tmp_path / "res" / "demo")
    report.print("header")
    report.table(["a", "b"], [[1, "x"], ["", 2.5]])
    written = report.save({"a": 1})
    assert [p.name for p in written] == ["demo.txt", "demo.json"]
    text = (tmp_path / "res" / "demo.txt").read_text()
    assert text == "header\n| a | b |\n|---|---|\n| 1 | x |\n| | 2.5 |\n"
    assert capsys.readouterr().out == text
    assert json.loads((tmp_path / "res" / "demo.json").read_text()) == {"a": 1}
    assert not [p for p in (tmp_path / "res").iterdir() if p.name.startswith(".")]  # no temporary files left
