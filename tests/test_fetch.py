"""Tests for pipeline.cli.fetch against a real loopback HTTP server that supports Range."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.idx_example_gen.idx_format import IDX_FILE_STEMS
from pipeline.cli import fetch_command
from pipeline.cli.fetch import (
    DATASET_SOURCES,
    MIRROR_ENV_VAR,
    FetchError,
    RemoteFile,
    default_deadline,
    fetch_dataset,
)

PAYLOADS = {
    "train-images-idx3-ubyte.gz": bytes(range(256)) * 800,  # 200 KiB: several blocks
    "train-labels-idx1-ubyte.gz": b"labels" * 50,
}


def _remote(name: str, content: bytes, with_size: bool = True) -> RemoteFile:
    size = len(content) if with_size else None
    return RemoteFile(name, hashlib.sha256(content).hexdigest(), size)


FILES = [_remote(name, content) for name, content in PAYLOADS.items()]


@dataclass
class _Site:
    """What the test server serves, and what it was asked for."""

    files: dict[str, bytes]
    honour_range: bool = True
    drop_after: int | None = None  # send only this many body bytes once, then hang up
    endless: bool = False  # hostile: no Content-Length, a body that never ends
    drip_seconds: float | None = None  # hostile: send the body one byte per this interval
    inflate: str | None = None  # hostile: this header claims 1 MB more than the file has
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base_url: str = ""


_BLOCK = 1 << 16


class _Handler(BaseHTTPRequestHandler):
    """Serves ``site.files`` at ``/<name>``, with ``Range: bytes=N-`` support."""

    site: _Site

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        name, range_header = self.path.lstrip("/"), self.headers.get("Range")
        self.site.requests.append((name, range_header))
        body = self.site.files.get(name)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and self.site.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            total = len(body) + self._extra("Content-Range")
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        else:
            self.send_response(200)
        if not self.site.endless:
            length = len(body) - start + self._extra("Content-Length")
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.close_connection = True
        try:
            self._send_body(body[start:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a hostile body, as it should

    def _extra(self, header: str) -> int:
        """How much ``header`` overstates the size (``site.inflate``)."""
        return 1_000_000 if self.site.inflate == header else 0

    def _send_body(self, body: bytes) -> None:
        """The body, honestly or in one of the hostile ways ``site`` asks for."""
        # Read once: a test turns the drip off while an earlier reply may still be dripping
        # (a handler thread outlives its client's deadline, even its test).
        drip_seconds = self.site.drip_seconds
        if self.site.endless:  # 64 MiB at most: an uncapped client fails instead of hanging
            for _ in range(1024):
                self.wfile.write(bytes(_BLOCK))
        elif drip_seconds is not None:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                time.sleep(drip_seconds)
        else:
            end, self.site.drop_after = self.site.drop_after, None
            self.wfile.write(body[:end])

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep pytest output clean."""


@pytest.fixture
def site() -> Iterator[_Site]:
    served = _Site(files=dict(PAYLOADS))
    handler = type("Handler", (_Handler,), {"site": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    served.base_url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield served
    server.shutdown()
    server.server_close()
    thread.join()


def _fetch(site: _Site, data_dir: Path, lines: list[str], **kwargs: object) -> list[str]:
    return fetch_dataset(
        "fashion_mnist",
        str(data_dir),
        base_url=site.base_url,
        progress=lines.append,
        files=kwargs.pop("files", FILES),
        **kwargs,
    )


def test_fresh_download(site: _Site, tmp_path: Path) -> None:
    lines: list[str] = []
    data_dir = tmp_path / "new" / "dir"
    paths = _fetch(site, data_dir, lines)
    assert paths == [str(data_dir / name) for name in PAYLOADS]
    for name, content in PAYLOADS.items():
        assert (data_dir / name).read_bytes() == content
    assert not list(data_dir.glob("*.part"))
    assert all(range_header is None for _, range_header in site.requests)
    # Coarse progress: a few lines per file, with percentages and a rate.
    images_lines = [line for line in lines if line.startswith("train-images")]
    assert sum(bool(re.search(r": \d+% \(", line)) for line in images_lines) == 3
    assert any("MB/s" in line for line in images_lines)
    assert len(images_lines) <= 7


def test_unknown_file_size_still_downloads(site: _Site, tmp_path: Path) -> None:
    files = [_remote(name, content, with_size=False) for name, content in PAYLOADS.items()]
    _fetch(site, tmp_path, [], files=files)
    for name, content in PAYLOADS.items():
        assert (tmp_path / name).read_bytes() == content


def test_skip_when_present(site: _Site, tmp_path: Path) -> None:
    _fetch(site, tmp_path, [])
    site.requests.clear()
    lines: list[str] = []
    _fetch(site, tmp_path, lines)
    assert site.requests == []
    assert lines == [f"{name}: already present, checksum OK" for name in PAYLOADS]


@pytest.mark.parametrize("honour_range", [True, False])
def test_resume_from_part(site: _Site, tmp_path: Path, honour_range: bool) -> None:
    site.honour_range = honour_range
    name = "train-images-idx3-ubyte.gz"
    content = PAYLOADS[name]
    (tmp_path / f"{name}.part").write_bytes(content[:70_000])
    lines: list[str] = []
    _fetch(site, tmp_path, lines, files=FILES[:1])
    assert site.requests == [(name, "bytes=70000-")]
    assert (tmp_path / name).read_bytes() == content
    assert not (tmp_path / f"{name}.part").exists()
    expected = "resuming" if honour_range else "server cannot resume"
    assert any(expected in line for line in lines), lines


def test_dropped_connection_keeps_part_for_resume(site: _Site, tmp_path: Path) -> None:
    name = "train-images-idx3-ubyte.gz"
    site.drop_after = 100_000
    with pytest.raises(FetchError) as excinfo:
        _fetch(site, tmp_path, [], files=FILES[:1])
    message = str(excinfo.value)
    assert "connection closed after 100000 of 204800 bytes; run again to resume" in message
    assert (tmp_path / f"{name}.part").stat().st_size == 100_000
    assert not (tmp_path / name).exists()

    _fetch(site, tmp_path, [], files=FILES[:1])
    assert site.requests[-1] == (name, "bytes=100000-")
    assert (tmp_path / name).read_bytes() == PAYLOADS[name]


@pytest.mark.parametrize("with_size", [True, False])
def test_complete_part_is_installed(site: _Site, tmp_path: Path, with_size: bool) -> None:
    """A complete .part needs no more bytes: known from the size, or from the server's 416."""
    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / f"{name}.part").write_bytes(PAYLOADS[name])
    _fetch(site, tmp_path, [], files=[_remote(name, PAYLOADS[name], with_size)])
    expected = [] if with_size else [(name, f"bytes={len(PAYLOADS[name])}-")]
    assert site.requests == expected
    assert (tmp_path / name).read_bytes() == PAYLOADS[name]


def test_redownload_corrupt_final_file(site: _Site, tmp_path: Path) -> None:
    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(b"not the real file")
    lines: list[str] = []
    _fetch(site, tmp_path, lines, files=[f for f in FILES if f.name == name])
    assert (tmp_path / name).read_bytes() == PAYLOADS[name]
    assert any("wrong checksum" in line and "downloading it again" in line for line in lines)


def test_checksum_mismatch(site: _Site, tmp_path: Path) -> None:
    name = "train-labels-idx1-ubyte.gz"
    wrong = RemoteFile(name, "0" * 64, None)
    with pytest.raises(FetchError) as excinfo:
        _fetch(site, tmp_path, [], files=[wrong])
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / name))
    assert "0" * 64 in message
    assert hashlib.sha256(PAYLOADS[name]).hexdigest() in message
    assert list(tmp_path.iterdir()) == []  # neither the final file nor a .part


def test_http_error(site: _Site, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"could not download .*/missing\.gz: HTTP 404"):
        _fetch(site, tmp_path, [], files=[RemoteFile("missing.gz", "0" * 64, None)])


def test_offline(tmp_path: Path) -> None:
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(FetchError) as excinfo:
        fetch_dataset("mnist", str(tmp_path), base_url=url, progress=lambda _: None)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {url}train-images-idx3-ubyte.gz: ")
    assert "Connection refused" in message
    assert message.endswith("(are you offline? use --data-dir with files you already have)")


def test_mirror_env_var(site: _Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV_VAR, site.base_url)
    fetch_dataset("mnist", str(tmp_path), progress=lambda _: None, files=FILES)
    assert [name for name, _ in site.requests] == list(PAYLOADS)


def test_unknown_dataset(tmp_path: Path) -> None:
    expected = r"unknown dataset 'cifar' \(choose from: cifar10, fashion_mnist, mnist\)"
    with pytest.raises(FetchError, match=expected):
        fetch_dataset("cifar", str(tmp_path))


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(FetchError, match=r"file: cannot create data directory"):
        fetch_dataset("mnist", str(blocker), progress=lambda _: None)


def test_source_table_is_complete() -> None:
    expected_names = {
        "mnist": [f"{stem}.gz" for stem in IDX_FILE_STEMS],
        "fashion_mnist": [f"{stem}.gz" for stem in IDX_FILE_STEMS],
        "cifar10": ["cifar-10-python.tar.gz"],
    }
    assert set(DATASET_SOURCES) == set(expected_names)
    for dataset, (base_url, files) in DATASET_SOURCES.items():
        assert base_url.startswith("http") and base_url.endswith("/")
        assert [f.name for f in files] == expected_names[dataset]
        assert all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size for f in files)


def test_cifar10_tarball_is_fetched_verified_and_usable_as_is(site: _Site, tmp_path: Path) -> None:
    from components.cifar_example_gen import cifar_format
    from tests import cifar_files

    # A tiny tarball in the official python layout, served under the official name.
    train = [cifar_files.synthetic_cifar(4, seed=seed) for seed in range(5)]
    tarball = cifar_files.write_python_version(
        str(tmp_path / "made"), train, cifar_files.synthetic_cifar(4), tarball=True
    )
    content = Path(tarball).read_bytes()
    name = DATASET_SOURCES["cifar10"][1][0].name
    site.files[name] = content
    data_dir = tmp_path / "data"
    lines: list[str] = []
    paths = fetch_dataset(
        "cifar10", str(data_dir), base_url=site.base_url, progress=lines.append,
        files=[_remote(name, content)],
    )
    assert paths == [str(data_dir / "cifar-10-python.tar.gz")]
    source = cifar_format.detect_cifar_source(str(data_dir))
    assert source.format == cifar_format.PYTHON
    assert cifar_format.validate_cifar_source(source) == 24
    # A second fetch finds the verified file and downloads nothing.
    requests_before = len(site.requests)
    fetch_dataset("cifar10", str(data_dir), base_url=site.base_url, progress=lines.append,
                  files=[_remote(name, content)])
    assert len(site.requests) == requests_before


# Hostile servers: a body past the file's size, and a trickle that never finishes.

_IMAGES = "train-images-idx3-ubyte.gz"
_DRIP_DEADLINE_S = 0.5


def test_endless_body_is_cut_at_known_size_and_deleted(site: _Site, tmp_path: Path) -> None:
    site.endless = True
    began = time.monotonic()
    with pytest.raises(FetchError) as excinfo:
        _fetch(site, tmp_path, [], files=FILES[:1])
    assert time.monotonic() - began < 5
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {site.base_url}{_IMAGES}: server sent more ")
    assert f"than the file's {len(PAYLOADS[_IMAGES])} bytes" in message
    assert MIRROR_ENV_VAR in message
    assert list(tmp_path.iterdir()) == []  # the oversize .part can never verify


@pytest.mark.parametrize("header", ["Content-Length", "Content-Range"])
def test_oversize_announcement_is_refused_before_reading(
    site: _Site, tmp_path: Path, header: str
) -> None:
    """A header claiming more than the file is refused up front; a resumable .part is kept."""
    site.inflate = header
    part = tmp_path / f"{_IMAGES}.part"
    part.write_bytes(PAYLOADS[_IMAGES][:1000])  # a resume, so that Content-Range is sent
    with pytest.raises(FetchError, match=r"server announces \d+ bytes, more than the file's"):
        _fetch(site, tmp_path, [], files=FILES[:1])
    assert part.read_bytes() == PAYLOADS[_IMAGES][:1000]


def test_drip_feed_stops_at_deadline_and_resumes(site: _Site, tmp_path: Path) -> None:
    site.drip_seconds = 0.01
    began = time.monotonic()
    with pytest.raises(FetchError) as excinfo:
        _fetch(site, tmp_path, [], files=FILES[:1], deadline=_DRIP_DEADLINE_S)
    assert time.monotonic() - began < 5  # the whole drip: over half an hour
    message = str(excinfo.value)
    saved = (tmp_path / f"{_IMAGES}.part").stat().st_size
    assert 0 < saved < len(PAYLOADS[_IMAGES])
    assert message.startswith(f"could not download {site.base_url}{_IMAGES}: ")
    assert re.search(rf"received {saved} bytes in \d+\.\d s, past the 0\.5 s deadline", message)
    assert f"({saved} of {len(PAYLOADS[_IMAGES])} bytes saved); run again to resume" in message

    site.drip_seconds = None  # the server recovers: the partial bytes are reused
    _fetch(site, tmp_path, [], files=FILES[:1])
    assert site.requests[-1] == (_IMAGES, f"bytes={saved}-")
    assert (tmp_path / _IMAGES).read_bytes() == PAYLOADS[_IMAGES]


def test_cli_fails_with_one_line_on_deadline(
    site: _Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(MIRROR_ENV_VAR, site.base_url)
    site.drip_seconds = 0.01
    assert fetch_command.fetch("mnist", str(tmp_path), deadline=_DRIP_DEADLINE_S) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"visionpipe: error: could not download {site.base_url}{_IMAGES}: ")
    assert "deadline" in error and error.count("\n") == 1


def test_default_deadline_scales_with_size() -> None:
    """At least 5 minutes; above that, the file's size at 64 KiB/s."""
    assert default_deadline(None) == default_deadline(4542) == 300
    cifar = DATASET_SOURCES["cifar10"][1][0].size
    assert default_deadline(cifar) == pytest.approx(cifar / 65536)
