"""OCR of pages without a text layer (the optional ``ocr`` extra: rapidocr-onnxruntime).

RapidOCR ships PP-OCRv4 detection and Chinese+English recognition ONNX models inside its wheel, so it
works offline. The engine loads on first use and is cached per process. Recognised boxes are grouped
into lines by their vertical position, so a table row stays on one line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "install kb-assistant[ocr] to read scanned pages"
#: pages are rendered so that their long side has this many pixels (about 137 dpi for A4: detection time
#: grows with the pixels, and 12 pt text read as well at 1200 px as at 2000 px) ...
RENDER_LONG_SIDE = 1600
#: ... and at most this many dots per inch (more does not read better, only slower)
RENDER_MAX_DPI = 200
#: boxes recognised with less confidence than this are dropped
MIN_SCORE = 0.5

_ENGINE: Any = None
_LOCK = threading.Lock()


def engine() -> Any | None:
    """The process-wide RapidOCR engine, or None when the ``ocr`` extra is not installed."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError:
                return None
            for name in ("RapidOCR", "rapidocr_onnxruntime"):  # it logs every call at INFO
                if logging.getLogger(name).level == logging.NOTSET:
                    logging.getLogger(name).setLevel(logging.WARNING)
            # no text-angle classifier: it turned upright lines of a clean page upside down (recall of an
            # English test page 0.84 with it, 0.99 without) and costs time; scans are upright
            _ENGINE = RapidOCR(use_cls=False)
            logger.info("loaded the OCR engine (RapidOCR, PP-OCRv4)")
        return _ENGINE


def available() -> bool:
    return engine() is not None


def render_scale(width_pt: float, height_pt: float) -> float:
    """PDFium render scale for a page of this size in points (see :data:`RENDER_LONG_SIDE`)."""
    return min(RENDER_LONG_SIDE / max(width_pt, height_pt, 1.0), RENDER_MAX_DPI / 72)


def read_image(image: Any) -> str:
    """Text of an image (numpy array, BGR or grey), one line per visual line; "" if nothing is read."""
    ocr = engine()
    if ocr is None:
        raise RuntimeError(INSTALL_HINT)
    result, _ = ocr(image)
    boxes = [(box, text, score) for box, text, score in (result or []) if score >= MIN_SCORE and text.strip()]
    return "\n".join(group_lines(boxes))


def group_lines(boxes: Sequence[tuple[Any, str, float]]) -> list[str]:
    """Join recognised boxes that share a visual line (vertical overlap), left to right."""
    items = []
    for box, text, _score in boxes:
        ys = [float(p[1]) for p in box]
        xs = [float(p[0]) for p in box]
        items.append((min(ys), max(ys), min(xs), text.strip()))
    items.sort(key=lambda it: (it[0] + it[1]) / 2)
    lines: list[list[tuple[float, float, float, str]]] = []
    for item in items:
        if lines:
            top = min(i[0] for i in lines[-1])
            bottom = max(i[1] for i in lines[-1])
            middle = (item[0] + item[1]) / 2
            if top <= middle <= bottom:
                lines[-1].append(item)
                continue
        lines.append([item])
    return [" ".join(i[3] for i in sorted(line, key=lambda i: i[2])) for line in lines]
