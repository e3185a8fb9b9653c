"""Whether a cluster serves its own state API (which decides whether Ray Train's placement-group cleaner runs):
asked of a local HTTP server that answers `/api/version` as a Ray dashboard does. The cluster's advertised
address and session come from Ray's internal KV, read here from a dict: the probe is what is under test;
tests/integration/test_cluster.py and test_train_options.py run it on real clusters."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trex_ray.executor import train as train_mod


@pytest.fixture
def dashboard():
    state = {"session": "session_ours", "asked": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            state["asked"] += 1
            if self.path != "/api/version":
                self.send_error(404)
                return
            body = json.dumps({"version": "4", "ray_version": "2.60", "session_name": state["session"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    state["address"] = f"127.0.0.1:{srv.server_address[1]}"
    yield state
    srv.shutdown()
    srv.server_close()


def _cluster(monkeypatch, address: str, session: str):
    from ray.experimental import internal_kv

    kv = {("dashboard", "dashboard"): address.encode(), ("session_name", "session"): session.encode()}
    monkeypatch.setattr(internal_kv, "_internal_kv_get", lambda key, namespace=None: kv.get((key, namespace)))
    monkeypatch.setattr(train_mod, "_SERVED", set())


def test_the_clusters_own_dashboard_is_asked_once_per_session(dashboard, monkeypatch):
    _cluster(monkeypatch, dashboard["address"], "session_ours")
    assert train_mod.dashboard_session(dashboard["address"]) == "session_ours"
    dashboard["asked"] = 0
    assert [train_mod._state_api_served() for _ in range(3)] == [True, True, True]
    assert dashboard["asked"] == 1  # a yes is kept: one probe for the session, not one a trial


def test_another_clusters_dashboard_is_a_no_and_is_asked_again(dashboard, monkeypatch):
    _cluster(monkeypatch, dashboard["address"], "session_ours")
    dashboard["session"] = "session_of_a_ray_start_head"
    assert [train_mod._state_api_served() for _ in range(2)] == [False, False]
    assert dashboard["asked"] == 2  # a no is not kept: the cluster's own dashboard may still be starting
    dashboard["session"] = "session_ours"  # ... and once it answers, the answer is yes
    assert train_mod._state_api_served() is True


def test_nothing_listening_or_not_a_dashboard_is_a_no(dashboard, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    assert train_mod.dashboard_session(closed) is None
    _cluster(monkeypatch, closed, "session_ours")
    assert train_mod._state_api_served() is False
    _cluster(monkeypatch, dashboard["address"], "")  # no session advertised: not known to be served
    assert train_mod._state_api_served() is False
