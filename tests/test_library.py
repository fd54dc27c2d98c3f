"""The front door: the README's Python example runs, the flat API is what the README says, the CLI
lists its commands, and `eval` and `explain` rank a query's gallery the same way."""

import re

import pytest
from typer.testing import CliRunner

import xreid
from conftest import REPO
from xreid.cli import app
from xreid.data.protocol import load_protocol
from xreid.evaluation.metrics import evaluate_ranking
from xreid.models.loading import load_embedder

runner = CliRunner()


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert blocks, "README has no ```python example"
    return blocks[0]


def test_flat_api_has_the_documented_entry_points():
    for name in ("load_embedder", "load_protocol", "evaluate", "load_head", "explain_query", "write_report"):
        assert callable(getattr(xreid, name)), name
    for name in re.findall(r"xreid\.(\w+)\(", readme_python_example()):
        assert name in xreid.__all__, f"README calls xreid.{name}, which the package does not export"


@pytest.mark.shared
def test_readme_python_example_runs(shared_data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XREID_DATA_ROOT", str(shared_data_root))
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"mean mAP \d+\.\d", printed) and " d=" in printed
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>")


def test_cli_lists_exactly_its_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    listed = set(re.findall(r"^│ (\w+)\s", res.output, re.M))
    assert listed == {"data", "train", "eval", "embed", "export", "attributes", "explain", "analyze", "index", "interpret", "serve", "fuse", "models", "adapt"}, listed


@pytest.mark.parametrize("command", [["eval"], ["embed"], ["explain"], ["analyze"], ["attributes", "fit"],
                                     ["attributes", "eval"]])
def test_every_embedding_command_shares_the_model_options(command):
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    for option in ("--model", "--height", "--width", "--channel-order", "--scale", "--flip", "--precision"):
        assert option in res.output, (command, option)


def _eval_and_explain_rankings(model, root, test_set, queries):
    """Top-50 gallery keys per query as `xreid eval` ranks them, and as `xreid explain` does."""
    proto = load_protocol("peta-reid", root)
    ts = next(t for t in proto.test_sets if t.name == test_set)
    embedder = load_embedder(model)
    q = embedder.embed_paths([proto.image_root / r.path for r in ts.query]).features
    g = embedder.embed_paths([proto.image_root / r.path for r in ts.gallery]).features
    metrics = evaluate_ranking(q, g, [r.pid for r in ts.query], [r.pid for r in ts.gallery],
                               [r.cam for r in ts.query], [r.cam for r in ts.gallery], keep_rankings=True)
    head = xreid.load_head() if model == "default" else None
    for i in queries:
        by_eval = [ts.gallery[j].path for j in metrics.rankings[i]]
        top = min(50, len(ts.gallery))
        explained = xreid.explain_query(embedder, head or _head_for(embedder), protocol="peta-reid", test_set=test_set,
                                  query_index=i, data_root=root, top_k=top)
        yield by_eval[:top], [r.key for r in explained.results]


def _head_for(embedder):
    import numpy as np

    from xreid.explain.attribute_head import AttributeHead

    dim = embedder.embed_arrays(np.zeros((1, *embedder.preprocess.size, 3), np.uint8)).shape[1]
    return AttributeHead(["personalMale"], np.ones((dim, 1)), np.array([0.5]), {})


def test_eval_and_explain_rank_identically_mini(tiny_model, mini_peta):
    for by_eval, by_explain in _eval_and_explain_rankings(str(tiny_model), mini_peta, "VIPeR", [0, 1]):
        assert by_eval == by_explain


@pytest.mark.shared
def test_eval_and_explain_rank_identically_peta(shared_data_root):
    for by_eval, by_explain in _eval_and_explain_rankings("default", shared_data_root, "VIPeR", [0, 7, 100]):
        assert by_eval == by_explain
