"""Clickable displays drawn in the browser: a run of tokens (CircuitsVis-style coloured
text), a table with a column per token (the logit lens), and a grid of attention
patterns (a small picture per head). Clicking a token or a column reports its position,
clicking a head's picture its label and the query row, which the pages turn into the
linked position and head (`state.set_url`).

Both are one Streamlit component (`st.components.v2`) whose JavaScript builds the
elements from the data it is given: token text and tooltips are set as text
(`textContent`, `title`), never parsed as HTML, and nothing is loaded from anywhere.
Colours are computed here (`colour`), so the browser only paints them.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st

_CSS = """
.lg-tokens { line-height: 1.9; font-family: monospace; font-size: 0.9rem; }
.lg-token { display: inline-block; margin: 1px; padding: 0 3px; border: 1px solid #ccc;
  border-radius: 3px; white-space: pre; cursor: pointer; color: #111; }
.lg-token:hover { border-color: #555; }
.lg-token.lg-selected { outline: 2px solid #e4572e; outline-offset: 1px; }
.lg-scroll { overflow-x: auto; max-width: 100%; }
.lg-table { border-collapse: collapse; font-family: monospace; font-size: 0.75rem; }
.lg-table th { font-weight: normal; padding: 0 2px; color: #333; white-space: pre; }
.lg-table thead th { writing-mode: vertical-rl; transform: rotate(180deg); cursor: pointer;
  height: 7.5em; text-align: left; max-height: 7.5em; overflow: hidden; }
.lg-table tbody th { text-align: right; position: sticky; left: 0; background: #fff; }
.lg-table td { min-width: 18px; height: 16px; padding: 0; cursor: pointer;
  border: 1px solid #fff; }
.lg-table .lg-selected { outline: 2px solid #e4572e; outline-offset: -1px; }
.lg-legend { display: flex; align-items: center; gap: 6px; font-family: sans-serif;
  font-size: 0.75rem; color: #333; margin: 2px 0 6px 0; }
.lg-legend .lg-bar { width: 160px; height: 10px; border: 1px solid #ccc; }
.lg-heads { display: flex; flex-wrap: wrap; gap: 6px; position: relative; }
.lg-head { display: flex; flex-direction: column; align-items: center; font-family: sans-serif;
  font-size: 0.75rem; color: #333; cursor: pointer; }
.lg-head canvas { image-rendering: pixelated; border: 1px solid #ccc; }
.lg-head.lg-selected canvas { outline: 3px solid #e4572e; }
.lg-tip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #888;
  padding: 2px 5px; font-family: monospace; font-size: 0.75rem; white-space: pre;
  display: none; z-index: 10; }
"""

_JS = r"""
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  let root = parentElement.querySelector('.lg-root');
  if (!root) {
    root = document.createElement('div');
    root.className = 'lg-root';
    parentElement.appendChild(root);
  }
  root.replaceChildren();
  const pick = (i) => setTriggerValue('clicked', i);
  if (data.legend) {
    const legend = document.createElement('div');
    legend.className = 'lg-legend';
    const low = document.createElement('span');
    low.textContent = data.legend.low;
    const bar = document.createElement('span');
    bar.className = 'lg-bar';
    bar.style.background = data.legend.gradient;
    const high = document.createElement('span');
    high.textContent = data.legend.high;
    const title = document.createElement('span');
    title.textContent = data.legend.title;
    legend.append(title, low, bar, high);
    root.appendChild(legend);
  }
  if (data.kind === 'heads') {
    const n = data.n;
    const raw = atob(data.patterns);
    const grid = document.createElement('div');
    grid.className = 'lg-heads';
    const tip = document.createElement('div');
    tip.className = 'lg-tip';
    data.heads.forEach((label, h) => {
      const cell = document.createElement('div');
      cell.className = 'lg-head' + (label === data.selected_head ? ' lg-selected' : '');
      cell.dataset.head = label;
      const canvas = document.createElement('canvas');
      canvas.width = n;
      canvas.height = n;
      canvas.style.width = data.size + 'px';
      canvas.style.height = data.size + 'px';
      const ctx = canvas.getContext('2d');
      const image = ctx.createImageData(n, n);
      for (let q = 0; q < n; q++) {
        for (let k = 0; k < n; k++) {
          const at = 4 * (q * n + k);
          if (k > q) {
            image.data.set([245, 245, 245, 255], at);
          } else {
            const v = raw.charCodeAt(h * n * n + q * n + k) / 255;
            image.data.set([255 - 222 * v, 255 - 153 * v, 255 - 83 * v, 255], at);
          }
        }
      }
      if (label === data.selected_head && data.selected_pos !== null) {
        for (let k = 0; k <= data.selected_pos; k++) {
          const at = 4 * (data.selected_pos * n + k);
          const v = raw.charCodeAt(h * n * n + data.selected_pos * n + k) / 255;
          image.data.set([255 - 27 * v, 255 - 168 * v, 255 - 209 * v, 255], at);
        }
      }
      ctx.putImageData(image, 0, 0);
      const where = (event) => {
        const box = canvas.getBoundingClientRect();
        const q = Math.min(n - 1, Math.floor((event.clientY - box.top) / box.height * n));
        const k = Math.min(n - 1, Math.floor((event.clientX - box.left) / box.width * n));
        return [Math.max(0, q), Math.max(0, k)];
      };
      canvas.onmousemove = (event) => {
        const [q, k] = where(event);
        const v = k > q ? null : raw.charCodeAt(h * n * n + q * n + k) / 255;
        tip.textContent = label + '  query ' + q + ' ' + data.tokens[q] + '\n' +
          'key ' + k + ' ' + data.tokens[k] + '\n' +
          (v === null ? 'future key (masked)' : 'attention ' + v.toFixed(3));
        const outer = grid.getBoundingClientRect();
        tip.style.left = (event.clientX - outer.left + 12) + 'px';
        tip.style.top = (event.clientY - outer.top + 12) + 'px';
        tip.style.display = 'block';
      };
      canvas.onmouseleave = () => { tip.style.display = 'none'; };
      canvas.onclick = (event) => pick({ head: label, pos: where(event)[0] });
      const name = document.createElement('span');
      name.textContent = label;
      cell.append(name, canvas);
      grid.appendChild(cell);
    });
    grid.appendChild(tip);
    root.appendChild(grid);
  } else if (data.kind === 'tokens') {
    const box = document.createElement('div');
    box.className = 'lg-tokens';
    data.tokens.forEach((text, i) => {
      const span = document.createElement('span');
      span.className = 'lg-token' + (i === data.selected ? ' lg-selected' : '');
      span.textContent = text;
      span.title = data.titles[i];
      span.style.background = data.colours[i];
      span.dataset.pos = String(i);
      span.onclick = () => pick(i);
      box.appendChild(span);
    });
    root.appendChild(box);
  } else {
    const scroll = document.createElement('div');
    scroll.className = 'lg-scroll';
    const table = document.createElement('table');
    table.className = 'lg-table';
    const head = table.createTHead().insertRow();
    head.appendChild(document.createElement('th'));
    data.columns.forEach((text, j) => {
      const th = document.createElement('th');
      th.textContent = text;
      th.title = data.column_titles[j];
      th.dataset.pos = String(j);
      if (j === data.selected) th.className = 'lg-selected';
      th.onclick = () => pick(j);
      head.appendChild(th);
    });
    const body = table.createTBody();
    data.rows.forEach((label, r) => {
      const row = body.insertRow();
      const th = document.createElement('th');
      th.textContent = label;
      row.appendChild(th);
      data.colours[r].forEach((colour, j) => {
        const td = row.insertCell();
        td.style.background = colour;
        td.title = data.titles[r][j];
        td.dataset.pos = String(j);
        if (j === data.selected) td.className = 'lg-selected';
        td.onclick = () => pick(j);
      });
    });
    scroll.appendChild(table);
    root.appendChild(scroll);
  }
}
"""


@functools.cache
def _component() -> Callable[..., Any]:
    # Registered on first use, inside a script run (registering at import, before the
    # server's runtime exists, would log a warning).
    return st.components.v2.component("lookingglass_clickable", css=_CSS, js=_JS)


# A white-to-colour scale for values in [0, 1], and a diverging one for [-1, 1].
_BLUE = np.array([33, 102, 172])
_RED = np.array([178, 24, 43])


def colour(value: float, signed: bool = False) -> str:
    """An rgb() colour for `value`: white (0) to blue (1), or with `signed` red (-1),
    white (0), blue (1). NaN is light grey; values outside the range are clipped."""
    if not np.isfinite(value):
        return "rgb(240,240,240)"
    value = float(np.clip(value, -1.0 if signed else 0.0, 1.0))
    end = _BLUE if value >= 0 else _RED
    rgb = 255 - (255 - end) * abs(value)
    return "rgb({},{},{})".format(*(int(round(c)) for c in rgb))


def legend(title: str, low: str, high: str, signed: bool = False) -> dict[str, str]:
    """A colour legend for `colour`'s scale: its title and the two ends' labels."""
    stops = [-1.0, 0.0, 1.0] if signed else [0.0, 1.0]
    gradient = f"linear-gradient(to right, {', '.join(colour(v, signed) for v in stops)})"
    return {"title": title, "low": low, "high": high, "gradient": gradient}


def _clicked(key: str, on_pick: Callable[[Any], None]) -> None:
    value = st.session_state.get(key)
    clicked = getattr(value, "clicked", None)
    if clicked is None and isinstance(value, dict):
        clicked = value.get("clicked")
    if clicked is not None:
        on_pick(clicked)


def token_text(
    tokens: Sequence[str],
    colours: Sequence[str],
    titles: Sequence[str],
    selected: int | None,
    key: str,
    on_pick: Callable[[int], None],
    legend: dict[str, str] | None = None,
) -> None:
    """Tokens as coloured text, the `selected` one outlined; a click calls
    `on_pick(position)` before the page runs again."""
    _component()(
        key=key,
        data={
            "kind": "tokens",
            "tokens": list(tokens),
            "colours": list(colours),
            "titles": list(titles),
            "selected": selected,
            "legend": legend,
        },
        on_clicked_change=lambda: _clicked(key, lambda c: on_pick(int(c))),
    )


def column_table(
    rows: Sequence[str],
    columns: Sequence[str],
    colours: Sequence[Sequence[str]],
    titles: Sequence[Sequence[str]],
    column_titles: Sequence[str],
    selected: int | None,
    key: str,
    on_pick: Callable[[int], None],
    legend: dict[str, str] | None = None,
) -> None:
    """A table of coloured cells (`colours[row][column]`, a tooltip each) with a
    column per token, scrolling sideways when wider than the page, the `selected`
    column outlined; clicking a cell or a column's header calls `on_pick(column)`."""
    _component()(
        key=key,
        data={
            "kind": "table",
            "rows": list(rows),
            "columns": list(columns),
            "colours": [list(r) for r in colours],
            "titles": [list(r) for r in titles],
            "column_titles": list(column_titles),
            "selected": selected,
            "legend": legend,
        },
        on_clicked_change=lambda: _clicked(key, lambda c: on_pick(int(c))),
    )


def head_grid(
    patterns: np.ndarray,
    labels: Sequence[str],
    tokens: Sequence[str],
    selected_head: str | None,
    selected_pos: int | None,
    key: str,
    on_pick: Callable[[str, int], None],
    size: int = 130,
) -> None:
    """Attention patterns `[head, query, key]` as small pictures on one shared scale
    (white 0 to blue 1, future keys grey), each titled by its label; hovering names the
    query and key tokens and the weight; the selected head is outlined with its selected
    query row in red. Clicking a picture calls `on_pick(label, query)`.

    Args:
        tokens: the tokens as they should read in the tooltip (e.g. quoted).
    """
    n = patterns.shape[-1]
    scaled = np.nan_to_num(np.clip(patterns, 0.0, 1.0)) * 255
    _component()(
        key=key,
        data={
            "kind": "heads",
            "n": n,
            "heads": list(labels),
            "patterns": base64.b64encode(np.round(scaled).astype(np.uint8).tobytes()).decode(),
            "tokens": list(tokens),
            "selected_head": selected_head,
            "selected_pos": selected_pos,
            "size": size,
            "legend": legend("attention", "0", "1"),
        },
        on_clicked_change=lambda: _clicked(key, lambda c: on_pick(str(c["head"]), int(c["pos"]))),
    )
