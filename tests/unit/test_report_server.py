"""Reports over http on loopback: only .html under the served root, and the links the UI gets."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from flows.report_server import ReportServer, report_url


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_only_reports_under_the_root_are_served(tmp_path):
    root = tmp_path / "artifacts"
    (root / "0123abcd" / "attempt-1" / "checkpoints").mkdir(parents=True)
    (root / "0123abcd" / "demo-1.html").write_text("<h1>demo</h1>")
    (root / "0123abcd" / "attempt-1" / "checkpoints" / "ckpt-1.index").write_text("weights")
    (tmp_path / "secret.html").write_text("outside")
    with ReportServer(root) as server:
        url = server.url_of(root / "0123abcd" / "demo-1.html")
        assert url == f"{server.url}/0123abcd/demo-1.html"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"<h1>demo</h1>" and "text/html" in response.headers["Content-Type"]
        assert status(f"{server.url}/0123abcd/attempt-1/checkpoints/ckpt-1.index") == 404
        assert status(f"{server.url}/../secret.html") == 404
        assert status(f"{server.url}/%2e%2e/secret.html") == 404
        assert status(f"{server.url}/0123abcd/") == 404  # no directory listings


@pytest.mark.parametrize(("report", "expected"), [
    ("gs://bucket/artifacts/0123/demo-1.html", "https://storage.cloud.google.com/bucket/artifacts/0123/demo-1.html"),
    ("file:///srv/artifacts/0123/demo%201.html", "http://127.0.0.1:8000/0123/demo%201.html"),
    ("/srv/artifacts/0123/demo-1.html", "http://127.0.0.1:8000/0123/demo-1.html"),
    ("/elsewhere/demo-1.html", None),  # not under the served root: nothing serves it
    ("memory://x/demo-1.html", None),
])
def test_report_links_are_https_for_gcs_and_http_for_served_files_never_file(report, expected):
    assert report_url(report, "/srv/artifacts", "http://127.0.0.1:8000") == expected


def test_without_a_report_server_a_local_report_has_no_link():
    assert report_url("/srv/artifacts/0123/demo-1.html", "/srv/artifacts", None) is None
