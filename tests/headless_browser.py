"""Headless Chromium for tests, with every network request it makes recorded.

Chromium is pointed at a proxy on loopback that forwards nothing (it answers
403) but records each request, plain HTTP and CONNECT tunnels alike, and
loopback is not bypassed; so no request leaves the machine, and a page that
tries to fetch anything from anywhere shows up in `RecordingProxy.requests`.

Chromium also calls its vendor's services on its own (Debian's build keeps
contacting its component updater and account endpoints even with the flags
below, on a blank page too). `browser_own_hosts()` learns those hosts from a
blank page, and `page_requests` leaves them out, so what remains is what the
page itself asked for.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

CHROMIUM_NAMES = ("chromium", "chromium-browser")
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--proxy-bypass-list=<-loopback>",  # loopback goes through the proxy too
)
TIMEOUT_S = 90


def chromium_binary() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    def _record(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        self.send_error(403, "no network in tests")

    do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = do_OPTIONS = _record

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


class RecordingProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def page_requests(self) -> list[str]:
        """The recorded requests, less those Chromium makes on a blank page."""
        own = browser_own_hosts()
        return [request for request in self.requests if request_host(request) not in own]


def request_host(request: str) -> str:
    """"CONNECT host:443" or "GET http://host/path" -> "host"."""
    method, _, target = request.partition(" ")
    if method == "CONNECT":
        return target.rsplit(":", 1)[0]
    return urllib.parse.urlsplit(target).hostname or target


@contextmanager
def recording_proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def _chromium(page: str, proxy: RecordingProxy, *action: str, width: int, height: int) -> subprocess.CompletedProcess:
    binary = chromium_binary()
    assert binary, "chromium is not installed"
    with tempfile.TemporaryDirectory() as profile:
        command = [
            binary,
            *QUIET_FLAGS,
            f"--user-data-dir={profile}",
            f"--proxy-server={proxy.url}",
            f"--window-size={width},{height}",
            *action,
            "file://" + os.path.abspath(page),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=True)


def dump_dom(page: str, proxy: RecordingProxy) -> str:
    """The DOM after the page has loaded, as HTML text."""
    return _chromium(page, proxy, "--dump-dom", width=1280, height=1024).stdout


def screenshot(page: str, proxy: RecordingProxy, png: str, width: int = 1280, height: int = 5000) -> None:
    """A PNG of the rendered page (the top `height` pixels)."""
    _chromium(page, proxy, f"--screenshot={png}", width=width, height=height)
    assert os.path.isfile(png), f"chromium wrote no screenshot to {png}"


@lru_cache(maxsize=1)
def browser_own_hosts() -> frozenset[str]:
    """The hosts Chromium contacts by itself, learnt from a blank page."""
    with tempfile.TemporaryDirectory() as folder:
        blank = os.path.join(folder, "blank.html")
        with open(blank, "w", encoding="utf-8") as handle:
            handle.write("<!DOCTYPE html><html><body></body></html>")
        with recording_proxy() as proxy:
            dump_dom(blank, proxy)
            screenshot(blank, proxy, os.path.join(folder, "blank.png"), height=200)
        return frozenset(map(request_host, proxy.requests))
