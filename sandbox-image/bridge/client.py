"""The bridge from this sandbox to the host.

Copied to /servers/client.py. call_mcp_tool() POSTs to the bridge endpoint over this run's unix socket, authenticated by this
run's token. Calls run on the upstream MCP server from the host; the upstream's credentials never
enter the sandbox. Standard library only.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import urllib.parse
from typing import Any

from ._protocol import PROTOCOL

__all__ = ["MCPToolError", "call_mcp_tool", "call_tool", "unwrap"]

ContentBlock = dict[str, Any]
CallToolResult = dict[str, Any]


class MCPToolError(Exception):
    """Raised when a tool reports an error (isError) or the bridge refuses the call."""

    def __init__(self, message: str, result: CallToolResult | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.status = status


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _connection() -> http.client.HTTPConnection:
    # Unix socket by default; a URL in the bridge's TCP mode (engines that cannot share a socket).
    url = os.environ.get(PROTOCOL["urlEnv"])
    if url:
        parts = urllib.parse.urlsplit(url)
        return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 80)
    return _UnixHTTPConnection(os.environ.get(PROTOCOL["socketEnv"]) or PROTOCOL["defaultSocket"])


# One connection per thread, kept open between calls (the bridge keeps an idle one 5 s): a call
# costs one request, not a connect.
_local = threading.local()


def _post(body: bytes, headers: dict[str, str], path: str = PROTOCOL["callPath"]) -> tuple[int, str]:
    conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
    reused = conn is not None and conn.sock is not None
    if conn is None:
        conn = _local.conn = _connection()
    try:
        conn.request("POST", path, body=body, headers=headers)
        res = conn.getresponse()
        status, text = res.status, res.read().decode("utf-8", "replace")
        if res.will_close:
            conn.close()
        return status, text
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        conn.close()
        _local.conn = None
        if not reused:
            raise
        # A kept connection the bridge closed just as this call went out: the call never arrived.
        return _post(body, headers, path)
    except BaseException:
        conn.close()
        _local.conn = None
        raise


def call_mcp_tool(server: str, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    """Calls `tool` on the upstream `server` and returns the raw MCP result (a dict)."""
    body = json.dumps({"server": server, "tool": tool, "arguments": arguments or {}}).encode("utf-8")
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "authorization": "Bearer " + os.environ.get(PROTOCOL["tokenEnv"], ""),
    }
    try:
        status, text = _post(body, headers)
    except OSError as err:
        raise MCPToolError(f"{server}.{tool}: the codebox bridge is unreachable ({err})") from None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = {"error": text}
    if status == 200:
        return parsed
    reason = parsed.get("error") if isinstance(parsed, dict) else None
    raise MCPToolError(f"{server}.{tool}: {reason or 'HTTP ' + str(status)}", None, status)


def unwrap(result: CallToolResult) -> Any:
    """What a tool's result means to code: its structuredContent when it has one; otherwise its
    text (the text blocks joined) when every block is text; otherwise the content blocks.
    A result with isError raises MCPToolError."""
    content = result.get("content") or []
    texts = [c.get("text", "") for c in content if c.get("type") == "text"]
    if result.get("isError"):
        raise MCPToolError("\n".join(texts) or "the tool reported an error", result)
    if result.get("structuredContent") is not None:
        return result["structuredContent"]
    if len(texts) == len(content):
        return "\n".join(texts)
    return content


def call_tool(server: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """call_mcp_tool, then unwrap."""
    return unwrap(call_mcp_tool(server, tool, arguments))
