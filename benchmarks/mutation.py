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
                     {"encode_probabilities", "threshold_code", "_codes_in", "_top_k", "mask"},
                     ["tests/test_index_filter.py", "tests/test_index.py", "tests/test_properties.py", "-k",
                      "filter or ann_search or length"]),
    "index_filter_parser": ("xreid/index/filters.py", None,
                            ["tests/test_filter_parser.py", "tests/test_query_paths.py", "tests/test_explain.py",
                             "tests/test_index_filter.py", "tests/test_properties.py", "-k", "parser or filter or commutes"]),
    "serve_guard": ("xreid/serve/app.py",
                    {"is_loopback", "check_bind", "Guard", "__init__", "__call__", "limited_receive", "secured_send",
                     "_authorised", "_send", "_send_json"},
                    ["tests/test_serve_guard.py", "tests/test_serve.py", "-k", "guard or loopback"]),
}

#: mutmut key -> why the mutant is equivalent (reviewed by hand; see docs/RESULTS.md#mutation-score)
EQUIVALENT: dict[str, str] = {
    'xreid.explain.naming.x_difference_probability__mutmut_3':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_difference_probability__mutmut_5':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_difference_probability__mutmut_7':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_difference_probability__mutmut_9':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_rank_agreements__mutmut_7':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_rank_agreements__mutmut_9':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_rank_agreements__mutmut_11':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_rank_agreements__mutmut_13':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.naming.x_rank_agreements__mutmut_18':
        'reliability not cast to bool: `&` with the bool comparison keeps the same non-zero positions for bool or 0/1 input, and only positions are returned',
    'xreid.explain.naming.x_rank_agreements__mutmut_20':
        'reliability not cast to bool: `&` with the bool comparison keeps the same non-zero positions for bool or 0/1 input, and only positions are returned',
    'xreid.explain.naming.x_rank_agreements__mutmut_29':
        'kind="STABLE": numpy reads the sort kind case-insensitively',
    'xreid.explain.naming.x_rank_differences__mutmut_21':
        'kind="STABLE": numpy reads the sort kind case-insensitively',
    'xreid.explain.naming.x_first_named__mutmut_26':
        '-2 instead of -1 as the not-a-candidate sentinel: probabilities are >= 0, so any negative sentinel loses the argmax',
    'xreid.explain.naming.x_first_named__mutmut_27':
        'argmax over axis +1 instead of -1: the array is always 2-D there (p_q[None] makes it so)',
    'xreid.explain.naming.x_candidates__mutmut_3':
        'parts not cast to float64: callers pass float64 (exact_decomposition); float32 parts gave the same answer on 200,000 random inputs (checked once, not a test)',
    'xreid.explain.naming.x_candidates__mutmut_5':
        'parts not cast to float64: callers pass float64 (exact_decomposition); float32 parts gave the same answer on 200,000 random inputs (checked once, not a test)',
    'xreid.explain.formulas.x_class_balanced_weights__mutmut_20':
        'labels not cast to bool: np.where reads non-zero as True, the same for bool or 0/1 labels',
    'xreid.explain.formulas.x_class_balanced_weights__mutmut_22':
        'labels not cast to bool: np.where reads non-zero as True, the same for bool or 0/1 labels',
    'xreid.explain.formulas.x_exact_decomposition__mutmut_4':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.formulas.x_exact_decomposition__mutmut_6':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.formulas.x_exact_decomposition__mutmut_8':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.formulas.x_exact_decomposition__mutmut_10':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.formulas.x_matching_scores__mutmut_8':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.formulas.x_matching_scores__mutmut_10':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.calibration.x_fit_platt__mutmut_5':
        'logits not cast: the first product with the float64 slope promotes them exactly (and w * z * z has a float64 w)',
    'xreid.explain.calibration.x_fit_platt__mutmut_7':
        'logits not cast: the first product with the float64 slope promotes them exactly (and w * z * z has a float64 w)',
    'xreid.explain.calibration.x_fit_platt__mutmut_10':
        'labels not cast: every use (y * t, p - y) has a float64 operand',
    'xreid.explain.calibration.x_fit_platt__mutmut_12':
        'labels not cast: every use (y * t, p - y) has a float64 operand',
    'xreid.explain.calibration.x_apply_platt__mutmut_5':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.explain.calibration.x_apply_platt__mutmut_7':
        'one operand keeps its own dtype, the other is float64: numpy computes in float64 either way (float32 -> float64 is exact)',
    'xreid.distance.x_cosine_similarity__mutmut_3':
        'the other branch computes the same cosine (it only avoids a normalised copy of a 2-D gallery)',
    'xreid.distance.x_cosine_similarity__mutmut_4':
        'the other branch computes the same cosine (it only avoids a normalised copy of a 2-D gallery)',
    'xreid.distance.x_l2_normalise__mutmut_3':
        'a scalar raises either way (numpy: no axis -1 on a 0-d array; torch: not a tensor)',
    'xreid.distance.x_l2_normalise__mutmut_20':
        "eps left to torch's default, 1e-12, which is EPS",
    'xreid.distance.x_rank_gallery__mutmut_19':
        'kind="STABLE": numpy reads the sort kind case-insensitively',
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_17':
        "0/0 is an 'invalid' floating-point event, never 'divide': the numerator is 0 whenever the denominator is",
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_19':
        "0/0 is an 'invalid' floating-point event, never 'divide': the numerator is 0 whenever the denominator is",
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_31':
        'at a count of 0 the division gives NaN (0/0), the value np.where would choose anyway',
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_44':
        'at a count of 0 the division gives NaN (0/0), the value np.where would choose anyway',
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_64':
        'float("NAN") is NaN',
    'xreid.evaluation.metrics.x_evaluate_ranking__mutmut_1':
        'the chunk size bounds memory only (test_chunked_equals_unchunked)',
    'xreid.evaluation.metrics.x_evaluate_ranking__mutmut_21':
        'normalised=False: cosine_distance normalises the (already unit) rows again: the same distances',
    'xreid.evaluation.metrics.x_evaluate_ranking__mutmut_23':
        'normalised=False: cosine_distance normalises the (already unit) rows again: the same distances',
    'xreid.evaluation.metrics.x_evaluate_ranking__mutmut_24':
        'normalised=False: cosine_distance normalises the (already unit) rows again: the same distances',
    'xreid.evaluation.metrics.xǁMetricAccumulatorǁadd__mutmut_10':
        'kind="STABLE": numpy reads the sort kind case-insensitively',
    'xreid.evaluation.metrics.xǁMetricAccumulatorǁadd__mutmut_6':
        "argsort's default axis is -1, which is 1 for the 2-D distance matrix",
    'xreid.evaluation.metrics.xǁMetricAccumulatorǁadd__mutmut_37':
        'first == max_rank adds to cmc_hits[max_rank:], an empty slice',
    'xreid.explain.match_probability.x_calibration_episodes__mutmut_33':
        'replace=None is falsy: numpy draws without replacement, as with False',
    'xreid.explain.match_probability.x_episode_pairs__mutmut_3':
        'one side of the person-id comparison keeps dtype object: numpy compares element by element with Python equality either way',
    'xreid.explain.match_probability.x_episode_pairs__mutmut_5':
        'one side of the person-id comparison keeps dtype object: numpy compares element by element with Python equality either way',
    'xreid.explain.match_probability.x_search_pairs__mutmut_3':
        'one side of the person-id comparison keeps dtype object: numpy compares element by element with Python equality either way',
    'xreid.explain.match_probability.x_search_pairs__mutmut_5':
        'one side of the person-id comparison keeps dtype object: numpy compares element by element with Python equality either way',
    'xreid.explain.match_probability.x_search_pairs__mutmut_7':
        'one side of the person-id comparison keeps dtype object: numpy compares element by element with Python equality either way',
    'xreid.explain.match_probability.x_search_pairs__mutmut_9':
        'one side of the person-id comparison keeps dtype object: numpy compares element by element with Python equality either way',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_5':
        'features not cast: concatenated with the float64 column of ones they become float64',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_7':
        'features not cast: concatenated with the float64 column of ones they become float64',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_10':
        'labels not cast: every use (y * t, p - y) has a float64 operand',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_12':
        'labels not cast: every use (y * t, p - y) has a float64 operand',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_2':
        'one more Newton step / one more halving: the loop has stopped long before (6 steps reach the optimum to 1e-6, test_fit_logistic_is_the_optimum_in_a_few_newton_steps)',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_81':
        'one more Newton step / one more halving: the loop has stopped long before (6 steps reach the optimum to 1e-6, test_fit_logistic_is_the_optimum_in_a_few_newton_steps)',
    'xreid.explain.match_probability.x_fit_match_calibration__mutmut_27':
        'features not cast to float32 here: rank_gallery casts them to float32 itself',
    'xreid.explain.match_probability.x_fit_match_calibration__mutmut_29':
        'features not cast to float32 here: rank_gallery casts them to float32 itself',
    'xreid.explain.match_probability.x_fit_match_calibration__mutmut_36':
        'reshape(-2) is reshape(-1) in numpy (any negative size is inferred)',
    'xreid.explain.match_probability.x_fit_match_calibration__mutmut_48':
        'reshape(-2) is reshape(-1) in numpy (any negative size is inferred)',
    'xreid.explain.match_probability.x_match_features__mutmut_30':
        'a one-result list has no differences to check',
    'xreid.explain.match_probability.x_match_features__mutmut_36':
        "np.diff's default axis is -1",
    'xreid.explain.match_probability.xǁMatchCalibrationǁ__post_init____mutmut_8':
        'reshape(-2) is reshape(-1) in numpy (any negative size is inferred)',
    'xreid.explain.match_probability.xǁMatchCalibrationǁsave__mutmut_4':
        'allow_nan=None is falsy: json refuses NaN, as with False',
    'xreid.index.gallery.x__codes_in__mutmut_1':
        'moves the switch between two exact paths (comparisons, lookup table), both checked against isin',
    'xreid.index.gallery.x__codes_in__mutmut_2':
        'moves the switch between two exact paths (comparisons, lookup table), both checked against isin',
    'xreid.index.gallery.x__top_k__mutmut_1':
        'moves the size above which candidates are pre-selected by argpartition; both paths end in the same exact sort',
    'xreid.index.gallery.x__top_k__mutmut_2':
        'moves the size above which candidates are pre-selected by argpartition; both paths end in the same exact sort',
    'xreid.index.gallery.x__top_k__mutmut_3':
        'moves the size above which candidates are pre-selected by argpartition; both paths end in the same exact sort',
    'xreid.index.gallery.x__top_k__mutmut_9':
        'partitioning at k-2 or k+1 still leaves k distinct rows whose largest distance is >= the k-th smallest, so the candidates stay a superset of the k nearest, sorted exactly after',
    'xreid.index.gallery.x__top_k__mutmut_10':
        'partitioning at k-2 or k+1 still leaves k distinct rows whose largest distance is >= the k-th smallest, so the candidates stay a superset of the k nearest, sorted exactly after',
    'xreid.index.gallery.x_encode_probabilities__mutmut_11':
        'float32 probabilities times 256 (a power of two) are exact in float32, so floor gives the same codes',
    'xreid.index.gallery.x_encode_probabilities__mutmut_13':
        'float32 probabilities times 256 (a power of two) are exact in float32, so floor gives the same codes',
    'xreid.explain.calibration.x_fit_platt__mutmut_1':
        'one more Newton step: the loop has stopped long before (6 steps reach the optimum, test_newton_steps_reach_the_optimum_in_a_few_steps)',
    'xreid.explain.calibration.x_fit_platt__mutmut_92':
        'a 31st halving: only reached after 30 failed halvings, which a descent direction never needs',
    'xreid.explain.calibration.x_fit_platt__mutmut_109':
        "'>=' for '>' between two float losses: differs only when they are equal to the last bit",
    'xreid.explain.calibration.x_fit_platt__mutmut_141':
        "'<=' for '<' between two float losses: differs only when they are equal to the last bit",
    'xreid.explain.calibration.x_fit_platt__mutmut_140':
        'never stopping early: the remaining Newton steps start at the optimum and do not move',
    'xreid.explain.calibration.x_fit_platt__mutmut_122':
        'shrinking a rejected step by 3 instead of 2: the damped iteration reaches the same unique optimum of the convex loss',
    'xreid.explain.calibration.x_sigmoid__mutmut_9':
        'no upper clip: for z above 37, 1 + exp(-z) rounds to 1 in float64 anyway',
    'xreid.explain.calibration.x_sigmoid__mutmut_15':
        'upper clip at 51 instead of 50: 1 + exp(-50) already rounds to 1 in float64',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_93':
        "'<' for '<=' between two float losses: differs only when they are equal to the last bit",
    'xreid.explain.match_probability.x_fit_logistic__mutmut_105':
        "'<=' for '<' between two float losses: differs only when they are equal to the last bit",
    'xreid.explain.match_probability.x_fit_logistic__mutmut_104':
        'never stopping early: the remaining Newton steps start at the optimum and do not move',
    'xreid.explain.match_probability.x_fit_logistic__mutmut_94':
        'a step must lower the loss by 1e-12 to be taken: at the optimum the loop then ends one step earlier, with w within 1e-12 of it',
    'xreid.distance.x_row_norms__mutmut_10':
        "einsum subscripts '...D,...D->...' name the same axis as '...d,...d->...'",
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_3':
        'predictions not cast to bool: for bool or 0/1 input, & and ~ with the bool truth keep the same lowest bit',
    'xreid.evaluation.metrics.x_attribute_mean_accuracy__mutmut_5':
        'predictions not cast to bool: for bool or 0/1 input, & and ~ with the bool truth keep the same lowest bit',
    'xreid.serve.app.x_is_loopback__mutmut_5':
        "also stripping 'X': an IP address never starts or ends with X",
    'xreid.serve.app.xǁGuardǁ__call____mutmut_144':
        'the flag that a response started is not read again after a refusal (every later receive and send returns early)',
    'xreid.serve.app.xǁGuardǁ__call____mutmut_145':
        'the flag that a response started is not read again after a refusal (every later receive and send returns early)',
    'xreid.serve.app.xǁGuardǁ__call____mutmut_16':
        "codec names are case-insensitive: 'LATIN-1' is latin-1",
    'xreid.serve.app.xǁGuardǁ__call____mutmut_19':
        "codec names are case-insensitive: 'LATIN-1' is latin-1",
    'xreid.serve.app.xǁGuardǁ_authorised__mutmut_18':
        "a missing X-Xreid-Token offers None instead of '': both are skipped as empty",
    'xreid.serve.app.xǁGuardǁ_authorised__mutmut_20':
        "a missing X-Xreid-Token offers None instead of '': both are skipped as empty",
    'xreid.serve.app.xǁGuardǁ_authorised__mutmut_23':
        "a missing X-Xreid-Token offers 'XXXX': never a token (tokens have 16 characters or more)",
    'xreid.serve.app.xǁGuardǁ_authorised__mutmut_31':
        "a missing Cookie reads as 'XXXX': a cookie named XXXX, not xreid_token",
    'xreid.serve.app.xǁGuardǁ_authorised__mutmut_62':
        "a missing query string reads as 'XXXX': it holds no token= field",
    'xreid.serve.app.xǁGuardǁ_authorised__mutmut_9':
        "a missing Authorization reads as 'XXXX': not a Bearer header",
    'xreid.explain.match_probability.x_fit_match_calibration__mutmut_46':
        'the pairs hold only the top-`context` distances, so the k-th distance read is the last one with either context',
    'xreid.explain.match_probability.x_fit_match_calibration__mutmut_61':
        "'<=' for '<' against 0: differs only for a fitted distance weight of exactly 0.0",
    'xreid.explain.match_probability.x_reliability_diagram__mutmut_8':
        'outcomes not cast: the mean of bool or 0/1 outcomes is a float64 either way',
    'xreid.explain.match_probability.x_reliability_diagram__mutmut_10':
        'outcomes not cast: the mean of bool or 0/1 outcomes is a float64 either way',
    'xreid.index.filters.x__text_spec__mutmut_36':
        "the 'none' of the field hint: the hint is only built when there are field names, so the join is never empty",
    'xreid.index.filters.x__text_spec__mutmut_37':
        "the 'none' of the field hint: the hint is only built when there are field names, so the join is never empty",
}

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


_DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
out = {}
for key in json.load(sys.stdin):
    try:
        out[key] = get_diff_for_mutant(key, path=find_mutant(key).path)
    except Exception as exc:  # a mutant mutmut cannot show: say so rather than stop
        out[key] = f"(no diff: {exc})"
print(json.dumps(out))
"""


def _diffs(scratch: Path, env: dict, keys: list[str]) -> dict[str, str]:
    """Each mutant's diff, all in one process (``mutmut show`` starts Python once per mutant)."""
    if not keys:
        return {}
    res = subprocess.run([sys.executable, "-c", _DIFFS], cwd=scratch, env=env, input=json.dumps(keys),
                         capture_output=True, text=True)
    return json.loads(res.stdout) if res.returncode == 0 else {k: f"(no diff: {res.stderr[-200:]})" for k in keys}


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
    # a mutant listed as equivalent that a test kills was not equivalent: it counts as killed
    equivalent = sorted(k for k, s in statuses.items() if k in EQUIVALENT and s not in ("killed", "timeout"))
    diffs = _diffs(scratch, env, survivors + equivalent)
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
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="print the table again from earlier --json files, with EQUIVALENT as it is now")
    args = ap.parse_args()
    if args.report:
        results = {}
        for path in args.report:
            results.update(json.loads(path.read_text()))
        for r in results.values():
            keys = list(r["survivors"]) + list(r["equivalents"])
            r["equivalents"] = {k: EQUIVALENT[k] for k in keys if k in EQUIVALENT}
            r["survivors"] = {k: v for k, v in r["survivors"].items() if k not in EQUIVALENT}
            r["equivalent"], r["survived"] = len(r["equivalents"]), len(r["survivors"])
            r["score"] = round(100.0 * r["killed"] / max(r["mutants"] - r["equivalent"], 1), 1)
        _table(results)
        return
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
    for n in names:
        r = results[n] = run_module(n, args.work, args.jobs)
        print(f"{n}: {r['mutants']} mutants, {r['killed']} killed, {r['equivalent']} equivalent, "
              f"{r['survived']} survived, {r['score']:.1f} % ({r['seconds']} s)", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    _table(results)


def _table(results: dict) -> None:
    print(f"{'module':<18} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'score':>6} {'time':>6}")
    for n, r in results.items():
        print(f"{n:<18} {r['mutants']:>7} {r['killed']:>6} {r['equivalent']:>5} {r['survived']:>8} "
              f"{r['score']:>5.1f}% {r['seconds']:>5}s")
        for key, diff in r["survivors"].items():
            print(f"  survived: {key}\n" + "".join(f"    {line}\n" for line in diff.splitlines()
                                                    if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))))
    killed = sum(r["killed"] for r in results.values())
    scored = sum(r["mutants"] - r["equivalent"] for r in results.values())
    print(f"{'all':<18} {sum(r['mutants'] for r in results.values()):>7} {killed:>6} "
          f"{sum(r['equivalent'] for r in results.values()):>5} {sum(r['survived'] for r in results.values()):>8} "
          f"{100.0 * killed / max(scored, 1):>5.1f}%")


if __name__ == "__main__":
    main()
