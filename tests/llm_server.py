"""A local HTTP server on 127.0.0.1 that speaks the Anthropic Messages API (`POST /v1/messages`) and the
OpenAI chat-completions API (`POST /v1/chat/completions`), replaying scripted replies and recording
every request, so the real SDK clients can be tested without a network.

A script entry is a reply body (dict: text or tool calls in the neutral layout below), an
`("error", status, type)` tuple, or a callable(request_json) -> entry for replies that depend on the
request. Neutral replies: {"text": str} or {"tool_calls": [{"name": str, "args": dict}], "text": str}.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedLLMServer:
    def __init__(self, script=None, responder=None):
        self.script = list(script or [])
        self.responder = responder
        self.requests: list[dict] = []  # {"path", "headers", "json"}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "json": body,
                                            "headers": {k.lower(): v for k, v in self.headers.items()}})
                    entry = server._next(body)
                if isinstance(entry, tuple) and entry[0] == "error":
                    _, status, kind = entry
                    payload = ({"type": "error", "error": {"type": kind, "message": kind}} if "messages" in self.path
                               and "chat" not in self.path else {"error": {"message": kind, "type": kind}})
                    return self._send(status, payload, {"retry-after-ms": "5", "retry-after": "0"})
                if self.path.endswith("/chat/completions"):
                    return self._send(200, server._openai(entry, body))
                return self._send(200, server._anthropic(entry, body))

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, body):
        entry = self.script.pop(0) if self.script else (self.responder(body) if self.responder else {"text": "{}"})
        return entry(body) if callable(entry) else entry

    def _anthropic(self, entry, body):
        content = [{"type": "text", "text": entry["text"]}] if entry.get("text") else []
        for c in entry.get("tool_calls", []):
            content.append({"type": "tool_use", "id": f"toolu_{next(self._ids)}", "name": c["name"], "input": c["args"]})
        return {"id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": content, "stop_reason": "tool_use" if entry.get("tool_calls") else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 50,
                          "cache_read_input_tokens": 400}}

    def _openai(self, entry, body):
        msg = {"role": "assistant", "content": entry.get("text")}
        if entry.get("tool_calls"):
            msg["tool_calls"] = [{"id": f"call_{next(self._ids)}", "type": "function",
                                  "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                                 for c in entry["tool_calls"]]
        return {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": 0,
                "model": body.get("model"),
                "choices": [{"index": 0, "message": msg,
                             "finish_reason": "tool_calls" if entry.get("tool_calls") else "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
