"""flows.prefect_api.post_json against a real loopback HTTP server: a busy API is retried, an error is not."""

from __future__ import annotations

import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flows import prefect_api


@pytest.fixture
def api(monkeypatch):
    """An API that answers each POST with the next status of `answers` (200 with the body echoed)."""
    monkeypatch.setattr(prefect_api.time, "sleep", lambda seconds: None)
    answers: list[int] = []
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = answers.pop(0)
            seen.append(status)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body if status == 200 else b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api", answers, seen
    server.shutdown()


def test_a_busy_api_is_asked_again(api):
    url, answers, seen = api
    answers.extend([503, 429, 200])
    assert prefect_api.post_json(url, "/flow_runs/filter", {"limit": 1}) == {"limit": 1}
    assert seen == [503, 429, 200]


def test_other_errors_and_a_busy_api_past_the_attempts_are_raised(api):
    url, answers, seen = api
    answers.extend([404, 503, 503])
    with pytest.raises(urllib.error.HTTPError, match="404"):
        prefect_api.post_json(url, "/nothing", {})
    with pytest.raises(urllib.error.HTTPError, match="503"):
        prefect_api.post_json(url, "/flow_runs/filter", {}, attempts=2)
    assert seen == [404, 503, 503]
