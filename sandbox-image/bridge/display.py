"""Show images in the result of this run (copied to /servers/display.py).

    display(fig)            # a matplotlib figure; plt.show() shows every open figure
    display(image)          # a PIL image
    display(png_bytes)      # PNG, JPEG, GIF, WebP or SVG bytes (or SVG text)
    display(df)             # a pandas DataFrame or Series: printed as a table

`display` is also a builtin in every Python run. The bytes go to the host over this run's bridge;
the result carries them as an MCP image (or, past the server's inline size, as a link to a copy
saved in /workspace). Standard library only; matplotlib, PIL and pandas are used only when the
object is one of theirs.
"""
from __future__ import annotations

import io
import os
import sys
import urllib.parse
from typing import Any

from ._protocol import PROTOCOL
from .client import _post

__all__ = ["display", "show"]

_PNG, _JPEG, _SVG = "image/png", "image/jpeg", "image/svg+xml"


def _send(data: bytes, mime: str | None, name: str | None) -> bool:
    headers = {
        "content-type": mime or "application/octet-stream",
        "content-length": str(len(data)),
        "authorization": "Bearer " + os.environ.get(PROTOCOL["tokenEnv"], ""),
    }
    if name:
        headers[PROTOCOL["nameHeader"]] = urllib.parse.quote(str(name)[:200], safe="")
    try:
        status, _text = _post(data, headers, PROTOCOL["displayPath"])
    except OSError as err:
        print(f"display: the codebox bridge is unreachable ({err})", file=sys.stderr)
        return False
    return status == 200


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure_name(fig: Any) -> str | None:
    label = fig.get_label() if hasattr(fig, "get_label") else ""
    if label:
        return label
    for ax in getattr(fig, "axes", [])[:1]:
        title = ax.get_title() if hasattr(ax, "get_title") else ""
        if title:
            return title
    return None


def _one(obj: Any, name: str | None) -> bool:
    module = type(obj).__module__ or ""
    if module.startswith("matplotlib") and hasattr(obj, "savefig"):
        return _send(_figure_png(obj), _PNG, name or _figure_name(obj))
    if module.startswith("matplotlib") and hasattr(obj, "get_figure"):  # an Axes
        return _one(obj.get_figure(), name)
    if module.startswith("PIL.") and hasattr(obj, "save") and hasattr(obj, "mode"):
        buf = io.BytesIO()
        image = obj if obj.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16") else obj.convert("RGBA")
        image.save(buf, format="PNG")
        return _send(buf.getvalue(), _PNG, name)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _send(bytes(obj), None, name)
    if isinstance(obj, str) and obj.lstrip()[:5] in ("<svg ", "<svg>", "<?xml"):
        return _send(obj.encode("utf-8"), _SVG, name)
    if module.startswith("pandas") and hasattr(obj, "to_string"):
        if name:
            print(name)
        print(obj.to_string(max_rows=60) if hasattr(obj, "to_frame") else obj.to_string(max_rows=60, max_cols=20))
        return True
    for attr, mime in (("_repr_png_", _PNG), ("_repr_jpeg_", _JPEG), ("_repr_svg_", _SVG)):
        method = getattr(obj, attr, None)
        if callable(method):
            data = method()
            if data:
                return _send(data.encode("utf-8") if isinstance(data, str) else bytes(data), mime, name)
    print(obj)
    return True


def display(*objs: Any, name: str | None = None) -> bool:
    """Shows each object in the run's result; True when all were shown."""
    return all([_one(obj, name) for obj in objs])


def show(*_args: Any, **_kwargs: Any) -> None:
    """plt.show(): shows every open matplotlib figure, then closes them."""
    import matplotlib.pyplot as plt
    from matplotlib._pylab_helpers import Gcf

    for manager in Gcf.get_all_fig_managers():
        display(manager.canvas.figure)
    plt.close("all")
