"""Rerun the ported TransformerLens suite and rewrite STATUS.md and known_failures.txt.

    python tests/tl_suite/refresh_status.py            # from the repository root

Runs `tests/tl_suite` twice without the known-failures list: once on lookingglass, once
on a copy with `lookingglass` replaced by `transformer_lens` (TransformerLens 3.9, the
reference; same conftest and stand-ins). Then:

- a test that fails on TransformerLens too is "not-applicable" (skipped here, with the
  reason TransformerLens gave);
- a test that passes on TransformerLens and fails on lookingglass is a known failure
  (xfail strict). Its category and cause are kept from the current list when it was
  already there, else guessed from `RULES`, else "uncategorised: <error message>";
- a file whose import fails on lookingglass is listed as a whole.
Entries for tests that now pass are dropped. Edit categories and causes by hand in
known_failures.txt; the next refresh keeps them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUITE = HERE.relative_to(REPO).as_posix()
KNOWN = HERE / "known_failures.txt"
STATUS = HERE / "STATUS.md"
NOT_APPLICABLE = "not-applicable"

# (regex on the error message, category, cause) for failures not yet in the list; the
# first match wins. Categories name the area a fixer owns.
RULES: list[tuple[str, str, str]] = [
    (
        r"could not be read from the Hugging Face Hub",
        "harness-standin",
        "lookingglass reads the hub config without AutoConfig, so the stand-in is not used",
    ),
    (r"No module named 'lookingglass\.([\w.]+)'", "module-paths", "no module lookingglass.{0}"),
    (r"cannot import name '(\w+)' from '([\w.]+)'", "public-surface", "{1} lacks {0}"),
    (
        r"(?:HookPoint|HookedRootModule)' object has no attribute '(\w+)'",
        "hook-introspection",
        "no HookPoint/HookedRootModule attribute {0!r}",
    ),
    (
        r"HookPoint\.has_hooks\(\) got an unexpected keyword argument '(\w+)'",
        "hook-introspection",
        "HookPoint.has_hooks() lacks argument {0!r}",
    ),
    (r"LensHandle", "hook-introspection", "no LensHandle"),
    (
        r"no attribute 'input_to_embed'",
        "start_at_layer/input_to_embed",
        "HookedTransformer.input_to_embed missing",
    ),
    (r"Unknown hook name '([\w.]+hook_result)'", "use_attn_result", "no {0} (cfg.use_attn_result)"),
    (
        r"'ActivationCache' object has no attribute '(\w+)'",
        "activation-cache",
        "ActivationCache.{0} missing",
    ),
    (r"got Slice", "activation-cache", "ActivationCache.apply_slice_to_batch_dim takes no Slice"),
    (
        r"set_ungroup_grouped_query_attention|KeyError: 'mask'",
        "component-constructors",
        "grouped-query attention component API (mask buffer / ungroup flag)",
    ),
    (r"(act_fn='\w+')", "config-unsupported", "{0} not implemented"),
    (r"(positional_embedding_type='\w+')", "config-unsupported", "{0} not implemented"),
    (r"d_vocab is not set", "config", "d_vocab is not inferred from tokenizer_name"),
    (r"make_mmlu_data_loader|mmlu_eval", "evals", "MMLU evals not provided"),
    (
        r"NotSupportedError: transformer_lens\.components\.(\w+)",
        "component-constructors",
        "no {0} component",
    ),
    (
        r"DID NOT RAISE AssertionError|TypeCheckError' in|AssertionError\)|' == 'The sequence",
        "error-types",
        "TransformerLens raises AssertionError (with its message) here",
    ),
    (r"lower triangular' in", "error-types", "error message differs from TransformerLens's"),
    (
        r"fails_on_invalid_(?:head|layer)_index|test_get_token_position_not_found",
        "error-types",
        "error type or message differs from TransformerLens's",
    ),
    (
        r"ne\(\) received an invalid combination of arguments - got \(NoneType\)",
        "tokenization",
        "tokenizer without a pad token keeps none (TransformerLens sets pad = eos on attach)",
    ),
    (
        r"including_remainder",
        "activation-cache",
        "stack_*_results(include_remainder=True) differs from TransformerLens",
    ),
    (
        r"test_utils_tokens\.py::test_to_str_tokens",
        "tokenization",
        "utils/model to_str_tokens result differs",
    ),
    (r"'(\w+)' object has no attribute '(\w+)'", "api-attributes", "{0} has no attribute {1!r}"),
    (r"unexpected keyword argument '(\w+)'", "api-arguments", "no keyword argument {0!r}"),
    (r"has no attribute '(\w+)'", "api-attributes", "no attribute {0!r}"),
]


def _run(root: Path, record: Path, jobs: str | None) -> None:
    env = {**os.environ, "TL_SUITE_IGNORE_KNOWN_FAILURES": "1", "TL_SUITE_RECORD": str(record)}
    command = [sys.executable, "-m", "pytest", SUITE, "-q", "-p", "no:randomly", "-o", "addopts="]
    command.append("--continue-on-collection-errors")
    if jobs:
        command += ["-n", jobs]
    run = subprocess.run(command, cwd=root, env=env, check=False, capture_output=True, text=True)
    (record.parent / f"{record.stem}.log").write_text(run.stdout + run.stderr)
    print(f"{root}: {(run.stdout.strip().splitlines() or ['no output'])[-1]}", file=sys.stderr)


def _outcomes(record: Path) -> dict[str, tuple[str, str]]:
    """`{nodeid: (outcome, message)}`, the worst outcome of a test's phases."""
    rank = {"passed": 0, "skipped": 1, "failed": 2, "collect-error": 3}
    result: dict[str, tuple[str, str]] = {}
    for line in record.read_text().splitlines() if record.exists() else []:
        entry = json.loads(line)
        old = result.get(entry["nodeid"])
        if old is None or rank[entry["outcome"]] > rank[old[0]]:
            result[entry["nodeid"]] = (entry["outcome"], entry["message"])
    return result


def _transformer_lens_copy(work: Path) -> Path:
    """The suite with `lookingglass` replaced by `transformer_lens` in the test files."""
    root = work / "tl"
    (root / "tests").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", root)
    shutil.copy(REPO / "tests" / "_helpers.py", root / "tests")
    shutil.copytree(HERE, root / SUITE, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root / SUITE).rglob("test_*.py"):
        path.write_text(path.read_text().replace("lookingglass", "transformer_lens"))
    (root / "lookingglass").symlink_to(REPO / "lookingglass")  # the conftest patches both
    return root


def _read_known() -> dict[str, tuple[str, str]]:
    known = {}
    for line in KNOWN.read_text().splitlines() if KNOWN.exists() else []:
        if line.strip() and not line.startswith("#"):
            nodeid, category, cause = (line.split("\t") + ["", ""])[:3]
            known[nodeid] = (category, cause)
    return known


def _guess(nodeid: str, message: str) -> tuple[str, str]:
    for pattern, category, cause in RULES:
        match = re.search(pattern, f"{nodeid}\n{message}")
        if match:
            return category, cause.format(*match.groups())
    return "uncategorised", _first_line(message)


def _first_line(message: str) -> str:
    """The line that says what went wrong: the last `E   ` line of a traceback, else the
    first line."""
    errors = [s[1:] for s in message.splitlines() if s.startswith("E ")]
    line = errors[-1] if errors else next((s for s in message.splitlines() if s.strip()), "")
    return re.sub(r"\s+", " ", line).strip()[:160]


def _file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def classify(ours: dict, reference: dict, known: dict) -> tuple[dict, Counter]:
    """`{nodeid: (category, cause)}` for the new list, and the totals."""
    entries: dict[str, tuple[str, str]] = {}
    totals: Counter = Counter()
    broken_files = {n: m for n, (o, m) in ours.items() if o == "collect-error"}
    for nodeid, (outcome, message) in reference.items():
        if outcome == "collect-error":
            entries[nodeid] = (
                NOT_APPLICABLE,
                f"fails on TransformerLens 3.9 offline too: {_first_line(message)}",
            )
            continue
        totals["ported"] += 1
        if outcome == "skipped":
            totals["skipped by TransformerLens's own marks"] += 1
            continue
        if outcome == "failed":
            totals[NOT_APPLICABLE] += 1
            cause = f"fails on TransformerLens 3.9 offline too: {_first_line(message)}"
            entries[nodeid] = (NOT_APPLICABLE, cause.replace("\t", " "))
            continue
        totals["pass on TransformerLens 3.9"] += 1
        if _file_of(nodeid) in broken_files:
            totals["fail on lookingglass"] += 1
            continue
        our_outcome, our_message = ours.get(nodeid, ("failed", "not collected on lookingglass"))
        if our_outcome == "passed":
            totals["pass on lookingglass"] += 1
        elif our_outcome == "skipped":
            totals["skipped on lookingglass only"] += 1
            entries[nodeid] = ("skipped-on-us", _first_line(our_message))
        else:
            totals["fail on lookingglass"] += 1
            entries[nodeid] = known.get(nodeid) or _guess(nodeid, our_message)
    for file, message in broken_files.items():
        reference_file = reference.get(file)
        if reference_file is None or reference_file[0] != "collect-error":
            entries[file] = known.get(file) or _guess(file, message)
    return entries, totals


def write_known(entries: dict[str, tuple[str, str]]) -> None:
    lines = [
        "# Ported TransformerLens tests that do not pass here; read by conftest.py.",
        "# Format: nodeid<TAB>category<TAB>cause. `not-applicable` = fails on TransformerLens",
        "# 3.9 offline too (skipped); every other category is xfail(strict=True): remove the",
        "# line when the test passes. Regenerate with tests/tl_suite/refresh_status.py.",
    ]
    by_category = defaultdict(list)
    for nodeid, (category, cause) in entries.items():
        by_category[category].append((nodeid, cause))
    for category in sorted(by_category, key=lambda c: (c == NOT_APPLICABLE, c)):
        lines.append(f"\n# --- {category} ({len(by_category[category])})")
        lines += [f"{n}\t{category}\t{c}" for n, c in sorted(by_category[category])]
    KNOWN.write_text("\n".join(lines) + "\n")


def write_status(entries: dict[str, tuple[str, str]], totals: Counter) -> None:
    lines = [
        "# Status of the ported TransformerLens tests",
        "",
        "Generated by `python tests/tl_suite/refresh_status.py`; see README.md.",
        "",
        "| count | tests |",
        "|---|---|",
    ]
    lines += [f"| {key} | {totals[key]} |" for key in (
        "ported", "pass on TransformerLens 3.9", "pass on lookingglass",
        "fail on lookingglass", NOT_APPLICABLE, "skipped by TransformerLens's own marks",
    )]  # fmt: skip
    categories = Counter(c for c, _ in entries.values() if c != NOT_APPLICABLE)
    lines += ["", "Known failures by category (a file entry counts once):", ""]
    lines += [f"- {c}: {n}" for c, n in categories.most_common()]
    by_category = defaultdict(list)
    for nodeid, (category, cause) in sorted(entries.items()):
        by_category[category].append(f"- `{nodeid}`: {cause}")
    for category in sorted(by_category, key=lambda c: (c == NOT_APPLICABLE, c)):
        lines += ["", f"## {category}", "", *by_category[category]]
    STATUS.write_text("\n".join(lines) + "\n")


def main() -> None:
    jobs = sys.argv[1] if len(sys.argv) > 1 else None  # e.g. "2" for pytest-xdist
    with tempfile.TemporaryDirectory(prefix="tl_suite_refresh_") as tmp:
        work = Path(os.environ.get("TL_SUITE_REFRESH_DIR") or tmp)  # set it to keep the logs
        work.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("TL_SUITE_REFRESH_REUSE"):  # 1: reclassify the kept records
            _run(REPO, work / "ours.jsonl", jobs)
            # TransformerLens does not change: with TL_SUITE_REFRESH_OURS_ONLY=1 and a kept
            # TL_SUITE_REFRESH_DIR, its earlier record is reused.
            kept = work / "reference.jsonl"
            if not (os.environ.get("TL_SUITE_REFRESH_OURS_ONLY") and kept.exists()):
                _run(_transformer_lens_copy(work), work / "reference.jsonl", jobs)
        ours, reference = _outcomes(work / "ours.jsonl"), _outcomes(work / "reference.jsonl")
    entries, totals = classify(ours, reference, _read_known())
    write_known(entries)
    write_status(entries, totals)
    print(dict(totals))


if __name__ == "__main__":
    main()
