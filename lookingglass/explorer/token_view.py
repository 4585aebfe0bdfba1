"""A strip of tokens coloured by a signed value on a diverging scale, with a legend, a
detail line that follows the mouse, and tokens that can be clicked (a Streamlit
`components.v2` component: a few lines of inline JavaScript, served by the app itself).

Colours: red for positive values, blue for negative, white at 0, full colour at
`scale` and beyond (the legend says so). The JavaScript builds the DOM with
`textContent` only, so a token or a detail line never becomes markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import streamlit as st

from lookingglass.explorer import views

POSITIVE = (214, 96, 77)  # RdBu's red
NEGATIVE = (67, 147, 195)  # RdBu's blue

_CSS = """
.lg-legend { display:flex; align-items:center; gap:6px; font-size:12px; margin:2px 0 6px; }
.lg-bar { width:180px; height:12px; border:1px solid #bbb;
  background:linear-gradient(to right, rgb(67,147,195), #fff, rgb(214,96,77)); }
.lg-detail { font-family:monospace; font-size:12px; white-space:pre; min-height:5.2em;
  background:#f6f6f6; border-radius:4px; padding:4px 6px; margin-bottom:6px; }
.lg-strip { line-height:1.9; }
.lg-tok { display:inline-block; margin:1px; padding:1px 3px; border:1px solid #ccc;
  border-radius:3px; font-family:monospace; white-space:pre; cursor:pointer; color:#111; }
.lg-tok:hover { border-color:#333; }
.lg-sel { outline:2px solid #222; }
"""

_JS = """
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  const rgb = (v, s) => {
    if (v === null || v === undefined || !isFinite(v)) return 'transparent';
    const a = Math.min(1, Math.abs(v) / s);
    const c = v >= 0 ? [214, 96, 77] : [67, 147, 195];
    return `rgba(${c[0]},${c[1]},${c[2]},${a.toFixed(3)})`;
  };
  let root = parentElement.querySelector('.lg-root');
  if (!root) {
    root = document.createElement('div');
    root.className = 'lg-root';
    parentElement.appendChild(root);
  }
  root.replaceChildren();
  const legend = document.createElement('div');
  legend.className = 'lg-legend';
  const low = document.createElement('span');
  low.textContent = `-${data.scale}`;
  const bar = document.createElement('span');
  bar.className = 'lg-bar';
  const high = document.createElement('span');
  high.textContent = `+${data.scale}`;
  const note = document.createElement('span');
  note.textContent = data.legend;
  legend.append(low, bar, high, note);
  const detail = document.createElement('div');
  detail.className = 'lg-detail';
  const rest = data.selected === null ? data.hint : data.tips[data.selected];
  detail.textContent = rest;
  const strip = document.createElement('div');
  strip.className = 'lg-strip';
  data.tokens.forEach((text, i) => {
    const span = document.createElement('span');
    span.className = 'lg-tok' + (i === data.selected ? ' lg-sel' : '');
    span.textContent = text;
    span.style.background = rgb(data.values[i], data.scale);
    span.dataset.pos = String(i);
    span.dataset.value = String(data.values[i]);
    span.onmouseenter = () => { detail.textContent = data.tips[i]; };
    span.onmouseleave = () => { detail.textContent = rest; };
    span.onclick = () => setTriggerValue('clicked', i);
    strip.appendChild(span);
  });
  root.append(legend, detail, strip);
}
"""

_STRIP = st.components.v2.component("lookingglass_token_strip", css=_CSS, js=_JS)


def colour(value: float, scale: float) -> tuple[int, int, int, float]:
    """The strip's colour of `value` as (r, g, b, alpha): red above 0, blue below,
    alpha |value| / scale capped at 1."""
    if not np.isfinite(value):
        return (0, 0, 0, 0.0)
    alpha = min(1.0, abs(value) / scale)
    return (*(POSITIVE if value >= 0 else NEGATIVE), round(alpha, 3))


def token_strip(
    tokens: Sequence[str],
    values: Sequence[float],
    tips: Sequence[str],
    scale: float,
    legend: str,
    key: str,
    selected: int | None = None,
    on_click: Callable[[int], None] | None = None,
    hint: str = "Hover over a token for its numbers; click it to select it.",
) -> None:
    """Draw the strip. `values[i]` colours token i (NaN: uncoloured), `tips[i]` is what
    the detail line shows while the mouse is over it; clicking token i calls
    `on_click(i)` before the page runs again."""
    if scale <= 0:
        raise ValueError(f"The colour scale must be positive, got {scale}.")

    def clicked() -> None:
        state = st.session_state.get(key) or {}
        position = state.get("clicked") if hasattr(state, "get") else None
        if on_click is not None and position is not None:
            on_click(int(position))

    _STRIP(
        data={
            "tokens": [views.shown_token(t) for t in tokens],
            "values": [float(v) if np.isfinite(v) else None for v in values],
            "tips": list(tips),
            "scale": float(scale),
            "legend": legend,
            "selected": selected,
            "hint": hint,
        },
        key=key,
        on_clicked_change=clicked,
    )
