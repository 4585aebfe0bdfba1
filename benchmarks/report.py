"""Markdown tables from `run_all.py`'s JSON results, written into `docs/benchmarks.md`
between the markers `<!-- run_all:begin -->` and `<!-- run_all:end -->` (the prose
around them is kept)."""

from __future__ import annotations

import json
from pathlib import Path

from common import format_table

BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"
BASE = "HF SDPA forward"
FORWARD_COLUMNS = {
    "HF eager forward": "HF eager",
    "TransformerLens forward": "TL fwd",
    "lookingglass forward": "ours fwd",
    "lookingglass run_with_cache (resid_post only)": "ours cache resid_post",
    "lookingglass run_with_cache (everything)": "ours cache all",
    "TransformerLens run_with_cache (everything)": "TL cache all",
}


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


# Ratios of user CPU time (the process's own computation, without the kernel's time for
# first-touch page faults; see `common.interleaved_timings`), for our two main ops.
FULL_CACHE = "lookingglass run_with_cache (everything)"
CPU_COLUMNS = {"lookingglass forward": "ours fwd, CPU", FULL_CACHE: "ours cache all, CPU"}


def _ratio(times: dict | None, key: str) -> str:
    """`times[key]` over HF SDPA's, or "-" when either was not measured."""
    if not times or key not in times or not times.get(BASE):
        return "-"
    return f"{times[key] / times[BASE]:.2f}x"


def forward_table(rows: list[dict]) -> str:
    header = ["model", "tokens", "thr", "load", "HF SDPA ms", *FORWARD_COLUMNS.values()]
    header += [*CPU_COLUMNS.values(), "ours cache all, kernel s"]
    header += ["full cache MiB", "ours max dlogp", "TL max dlogp"]
    out = []
    for r in rows:
        base = r["median_s"][BASE]
        ratios = [_ratio(r["median_s"], k) for k in FORWARD_COLUMNS]
        ratios += [_ratio(r.get("median_user_s"), k) for k in CPU_COLUMNS]
        kernel = r.get("median_sys_s", {}).get(FULL_CACHE)
        ratios.append("-" if kernel is None else f"{kernel:.2f}")
        out.append(
            [
                r["model"],
                r["shape"],
                str(r["threads"]),
                f"{r['load_before']:.1f}",
                f"{base * 1000:.1f}",
                *ratios,
                f"{r['full_cache_mib']:.0f}" + ("" if r["full_cache_measured"] else " (est.)"),
                f"{r['log_prob_diff']['ours']:.1e}",
                f"{r['log_prob_diff']['tl']:.1e}",
            ]
        )
    return format_table(out, header)


def loading_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        hf = r["loaders"]["HF from_pretrained (SDPA)"]
        for name, v in r["loaders"].items():
            out.append(
                [
                    r["model"],
                    f"{r['weights_mib']:.0f}",
                    name,
                    f"{v['seconds']:.2f}",
                    f"{v['seconds'] / hf['seconds']:.2f}x",
                    f"{v['peak_before_touch_x']:.2f}x",
                    f"{v['peak_x']:.2f}x",
                    f"{v['peak_x'] - hf['peak_x']:+.2f}x",
                ]
            )
    header = ["model", "weights MiB", "loader", "s", "time vs HF", "peak, loaded"]
    header += ["peak, every weight touched", "peak minus HF's"]
    return format_table(out, header)


def long_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        for name, v in r["variants"].items():
            if v.get("skipped"):
                out.append([r["model"], r["shape"], name, "not run", "", "", "", ""])
                continue
            out.append(
                [
                    r["model"],
                    r["shape"],
                    name,
                    _mib(v["peak"]),
                    _mib(v["cache"]),
                    _mib(v["logits"]),
                    _mib(v["bound"]),
                    "yes" if v["within_bound"] else f"no (+{_mib(v['peak'] - v['bound'])})",
                ]
            )
    header = ["model", "tokens", "variant", "peak MiB", "cached MiB", "logits MiB"]
    header += ["bound MiB", "peak <= cached + HF forward's peak"]
    return format_table(out, header)


def analysis_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        passes = r.get("passes", {})
        shown = "; ".join(
            f"{who} {p.get('forward', 0)} fwd + {p.get('backward', 0)} bwd"
            for who, p in passes.items()
        )
        out.append(
            [
                r["op"],
                str(r["threads"]),
                str(r["variants"]),
                str(r.get("hf_timed_on", "all")),
                f"{r['hf_s']:.2f}",
                f"{r['ours_s']:.2f}",
                f"{r['hf_s'] / r['ours_s']:.1f}x",
                f"{r['max_abs_diff']:.1e}",
                shown,
            ]
        )
    header = ["op (SmolLM2-135M)", "thr", "variants", "HF timed on", "HF loop s", "ours s"]
    header += ["speedup", "max abs diff", "passes"]
    return format_table(out, header)


def render(result: dict) -> str:
    runs = result.get("runs", [])
    parts = [f"### CPU, `--{result.get('mode')}`\n"]
    for run in runs[-4:]:
        parts.append(
            f"- {run['date']}: sections {', '.join(run['sections'])}; {run['cpu']}, "
            f"{run['cores']} cores, {run['memory_gib']} GiB; torch {run['torch']}, "
            f"transformers {run['transformers']}, TransformerLens {run['transformer_lens']}, "
            f"lookingglass {run['lookingglass_commit']}; load average "
            f"{run['load_average_start']} -> {run['load_average_end']}; {run['seconds']} s"
        )
    tables = [
        ("forward", "Forward and run_with_cache (time / HF SDPA's)", forward_table),
        ("loading", "Loading from a local safetensors folder (fresh process each)", loading_table),
        ("long", "Long contexts: peak memory of run_with_cache", long_table),
        ("analysis", "Analysis on the real model vs a plain loop with HF hooks", analysis_table),
    ]
    for key, title, table in tables:
        if result.get(key):
            parts.append(f"\n#### {title}\n\n{table(result[key])}")
    return "\n".join(parts) + "\n"


def update_docs(doc: Path, results: Path) -> None:
    """Replace the generated block of `doc` with tables from every JSON in `results`."""
    blocks = [render(json.loads(p.read_text())) for p in sorted(results.glob("cpu-*.json"))]
    generated = f"{BEGIN}\n<!-- generated by benchmarks/run_all.py; edit the prose outside -->\n\n"
    generated += "\n".join(blocks) + END
    text = doc.read_text() if doc.is_file() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + generated + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    doc.write_text(text)
    print(f"updated {doc}")
