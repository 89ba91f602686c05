"""A drawing canvas for a model's input, sized and coloured for the current model.

A small component of our own (``st.components.v2``, rendered in the page, no iframe): pointer events,
so mouse, pen and finger all draw; a toolbar with undo, redo and clear. Each finished stroke is sent
at once as the canvas's pixels (streamlit-drawable-canvas 0.13 waits 200 ms after every stroke before
it sends, which alone is the Encode page's whole latency budget). ``preprocess.prepare_drawing`` turns
the pixels into the model's input through the same steps as an upload.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import NamedTuple

import numpy as np
import streamlit as st
from PIL import Image, UnidentifiedImageError

from vae_core.preprocess import CanvasColours

CANVAS_SIDE = 280  # on-screen pixels of the canvas's longer side: ten per pixel of a 28x28 model
# MNIST strokes are about 2 to 3 pixels wide in 28; 2.2 model pixels keeps a drawn digit looking like one.
STROKE_IN_MODEL_PIXELS = 2.2
MAX_PNG_CHARS = 4 * CANVAS_SIDE * CANVAS_SIDE * 2  # a data URL longer than this is no canvas of ours

# One state per mounted canvas, on its root element. ``draw`` keeps the strokes (lists of points in
# canvas pixels); ``undone`` what undo took, for redo. A change of size or colours starts a new drawing.
_JS = r"""
export default function (component) {
  const { parentElement, data, setStateValue } = component;
  const root = parentElement.querySelector(".vae-sketch");
  let s = root.__sketch;
  if (!s) {
    const canvas = document.createElement("canvas");
    const bar = document.createElement("div");
    bar.className = "vae-sketch-bar";
    const button = (label, text) => {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = text; b.title = label; b.setAttribute("aria-label", label);
      bar.append(b);
      return b;
    };
    const undo = button("Undo", "↶ Undo"), redo = button("Redo", "↷ Redo");
    const clear = button("Reset canvas & history", "✕ Clear");
    root.append(canvas, bar);
    s = { canvas, ctx: canvas.getContext("2d"), strokes: [], undone: [], current: null, look: null };
    root.__sketch = s;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
    };
    s.paint = () => {
      const { ctx } = s, look = s.look;
      ctx.fillStyle = look.background;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      Object.assign(ctx, { strokeStyle: look.ink, lineWidth: look.pen, lineCap: "round", lineJoin: "round" });
      for (const points of s.current ? [...s.strokes, s.current] : s.strokes) {
        ctx.beginPath();
        ctx.moveTo(points[0][0], points[0][1]);
        for (const [x, y] of points.length > 1 ? points.slice(1) : [[points[0][0] + 0.01, points[0][1]]]) ctx.lineTo(x, y);
        ctx.stroke();
      }
      undo.disabled = !s.strokes.length; redo.disabled = !s.undone.length; clear.disabled = !s.strokes.length;
    };
    s.send = () => {
      setStateValue("drawing", s.strokes.length ? { png: canvas.toDataURL("image/png"), strokes: s.strokes.length } : null);
    };
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 && e.pointerType === "mouse") return;
      canvas.setPointerCapture(e.pointerId);
      s.current = [at(e)];
      s.paint();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!s.current) return;
      for (const p of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) s.current.push(at(p));
      s.paint();
    });
    const finish = () => {
      if (!s.current) return;
      s.strokes.push(s.current); s.current = null; s.undone = [];
      s.paint(); s.send();
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    undo.addEventListener("click", () => { if (s.strokes.length) { s.undone.push(s.strokes.pop()); s.paint(); s.send(); } });
    redo.addEventListener("click", () => { if (s.undone.length) { s.strokes.push(s.undone.pop()); s.paint(); s.send(); } });
    clear.addEventListener("click", () => { s.strokes = []; s.undone = []; s.paint(); s.send(); });
  }
  const look = { width: data.width, height: data.height, background: data.background, ink: data.ink, pen: data.pen };
  if (!s.look || ["width", "height", "background", "ink"].some((k) => s.look[k] !== look[k])) {
    s.canvas.width = look.width; s.canvas.height = look.height;
    s.canvas.style.width = `${look.width}px`; s.canvas.style.height = `${look.height}px`;
    if (s.look) { s.strokes = []; s.undone = []; }
  }
  s.look = look;
  s.paint();
}
"""
_CSS = """
.vae-sketch { display: inline-flex; flex-direction: column; gap: 0.4rem; }
.vae-sketch canvas { touch-action: none; cursor: crosshair; border-radius: 0.5rem; }
.vae-sketch-bar { display: flex; gap: 0.4rem; }
.vae-sketch-bar button {
  font: inherit; font-size: 0.875rem; padding: 0.2rem 0.7rem; cursor: pointer;
  border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.5rem; background: white; color: inherit;
}
.vae-sketch-bar button:disabled { opacity: 0.4; cursor: default; }
"""
_sketch = st.components.v2.component(
    "vae_explorer.sketch", html='<div class="vae-sketch"></div>', js=_JS, css=_CSS
)


class Drawing(NamedTuple):
    """What the canvas holds: its pixels (H, W, 4) uint8 once a stroke is drawn, and how many strokes."""

    rgba: np.ndarray | None
    strokes: int


def canvas_size(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """Return the canvas's (width, height) in screen pixels: the model's aspect, ``CANVAS_SIDE`` on its longer side."""
    _, height, width = image_shape
    scale = CANVAS_SIDE / max(height, width)
    return round(width * scale), round(height * scale)


def stroke_width(image_shape: tuple[int, int, int]) -> int:
    """Return the pen's width in screen pixels: ``STROKE_IN_MODEL_PIXELS`` of the model's pixels."""
    _, height, width = image_shape
    return max(2, round(STROKE_IN_MODEL_PIXELS * CANVAS_SIDE / max(height, width)))


def decode_drawing(value: object) -> Drawing:
    """Return the canvas's message (``{"png": data URL, "strokes": n}`` or None) as pixels; refuse anything else."""
    if not isinstance(value, dict) or not isinstance(value.get("png"), str):
        return Drawing(rgba=None, strokes=0)
    head, _, encoded = value["png"].partition(";base64,")
    if head != "data:image/png" or len(encoded) > MAX_PNG_CHARS:
        return Drawing(rgba=None, strokes=0)
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)), formats=["PNG"]) as img:
            if img.width * img.height > 4 * CANVAS_SIDE * CANVAS_SIDE:
                return Drawing(rgba=None, strokes=0)
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        return Drawing(rgba=None, strokes=0)
    strokes = value.get("strokes")
    return Drawing(rgba=rgba, strokes=strokes if isinstance(strokes, int) else 1)


def drawing_canvas(*, key: str, image_shape: tuple[int, int, int], colours: CanvasColours) -> Drawing:
    """Draw the canvas (widget key ``key``) in the model's background and ink colours; return what it holds.

    Args:
        key: the component's widget key.
        image_shape: the model's (C, H, W); the canvas has its aspect ratio.
        colours: background and ink grey levels, from ``preprocess.canvas_colours`` of the model's images.

    Returns:
        ``Drawing``: ``rgba`` is None until the first stroke (and after Clear empties the canvas).
    """
    width, height = canvas_size(image_shape)
    background, ink = colours.css
    result = _sketch(
        data={
            "width": width,
            "height": height,
            "background": background,
            "ink": ink,
            "pen": stroke_width(image_shape),
        },
        key=key,
        default={"drawing": None},
        on_drawing_change=lambda: None,
        width="content",
        height="content",
    )
    return decode_drawing(result.get("drawing"))


def drawing_help(colours: CanvasColours) -> None:
    """Say how to use the canvas, under it."""
    ink = "white" if colours.ink > colours.background else "black"
    st.caption(
        f"Draw in {ink} with the mouse, a pen or a finger; undo, redo or clear below the canvas. Every finished "
        "stroke updates what follows."
    )
