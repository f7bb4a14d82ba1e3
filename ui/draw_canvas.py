"""The Draw page's canvas: a small components-v2 widget that sends stroke paths (rasterised by mnistcore.strokes).

Why our own and not streamlit-drawable-canvas: that one sends the whole 280x280 picture back on every
stroke and is cleared by re-creating it under a new key, and a stroke drawn on the old canvas before
the new one arrives was lost (the "first stroke after Clear" bug). This canvas keeps one instance,
clears in the browser at once (its Clear button is part of it, no round trip), and sends only the
strokes' points (a few kB) after each stroke; `rasterize` draws them with the same round pen.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from mnistcore.strokes import SIZE

_JS = """
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const host = parentElement.querySelector(".mnl-canvas");
  let s = host.__mnl;
  if (!s) {
    s = { strokes: [], current: null, seq: 0, width: data.stroke_width };
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = data.size;
    canvas.className = "mnl-surface";
    canvas.setAttribute("data-testid", "draw-surface");
    const clear = document.createElement("button");
    clear.type = "button";
    clear.className = "mnl-clear";
    clear.textContent = "Clear";
    clear.setAttribute("data-testid", "draw-clear");
    host.append(canvas, clear);
    const ctx = canvas.getContext("2d");
    s.canvas = canvas; s.ctx = ctx;
    const paint = () => {
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineCap = "round"; ctx.lineJoin = "round";
      for (const st of s.strokes) {
        ctx.lineWidth = st.w;
        const p = st.p;
        if (p.length === 2) { ctx.beginPath(); ctx.arc(p[0], p[1], st.w / 2, 0, 2 * Math.PI); ctx.fill(); continue; }
        ctx.beginPath(); ctx.moveTo(p[0], p[1]);
        for (let i = 2; i < p.length; i += 2) ctx.lineTo(p[i], p[i + 1]);
        ctx.stroke();
      }
    };
    s.paint = paint;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [Math.round((e.clientX - r.left) * canvas.width / r.width * 10) / 10,
              Math.round((e.clientY - r.top) * canvas.height / r.height * 10) / 10];
    };
    const send = () => {
      s.seq += 1;
      setStateValue("strokes", { seq: s.seq, strokes: s.strokes });
    };
    canvas.addEventListener("pointerdown", (e) => {
      canvas.setPointerCapture(e.pointerId);
      s.current = { w: s.width, p: at(e) };
      s.strokes.push(s.current);
      paint();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!s.current) return;
      s.current.p.push(...at(e));
      paint();
    });
    const end = () => { if (!s.current) return; s.current = null; send(); };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    clear.addEventListener("click", () => { s.strokes = []; s.current = null; paint(); send(); });
    paint();
    host.__mnl = s;
  }
  s.width = data.stroke_width;
}
"""

_CSS = """
.mnl-canvas { display: flex; flex-direction: column; align-items: flex-start; gap: 8px; }
.mnl-surface { width: 280px; height: 280px; border-radius: 8px; touch-action: none; cursor: crosshair;
               border: 1px solid #D1D5DB; }
.mnl-clear { font: inherit; font-size: 14px; padding: 4px 14px; border-radius: 8px; cursor: pointer;
             border: 1px solid #D1D5DB; background: #fff; color: #31333F; }
.mnl-clear:hover { border-color: #4F46E5; color: #4F46E5; }
"""

_COMPONENT: Any = None


def _component() -> Any:
    global _COMPONENT
    if _COMPONENT is None:
        _COMPONENT = st.components.v2.component(
            "mnist_lab.draw_canvas", html='<div class="mnl-canvas"></div>', css=_CSS, js=_JS
        )
    return _COMPONENT


def draw_canvas(stroke_width: int, key: str) -> dict[str, Any] | None:
    """Mount the canvas; the last drawing the browser sent ({"seq", "strokes"}) or None before any stroke."""
    result = _component()(
        data={"stroke_width": int(stroke_width), "size": SIZE},
        key=key,
        default={"strokes": None},
        on_strokes_change=lambda: None,
    )
    return result.get("strokes") if hasattr(result, "get") else getattr(result, "strokes", None)
