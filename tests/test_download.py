"""download(): mirrors in turn, md5, atomic replace; and the loaders' download paths, all against 127.0.0.1."""

import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tinygan.data import DatasetNotFoundError, DownloadError, cache_dir, load_cifar10, load_mnist, md5sum
from tinygan.data.download import download
from tinygan.data.mnist import MNIST_MD5

PAYLOAD = bytes(range(256)) * 64
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
EMBEDDED = Path(__file__).resolve().parents[1] / "tinygan" / "data" / "embedded"


class LocalServer:
    """A tiny HTTP server on 127.0.0.1 whose routes say what to send, and which counts requests per path.

    Route values: ``bytes`` (200 with that body), an ``int`` (that status), ``("slow", seconds)`` (wait
    before answering), ``("short", body)`` (announce more bytes than it sends, then hang up).
    """

    def __init__(self, routes):
        self.routes = routes
        self.hits: dict[str, int] = {}
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path, 404)
                if isinstance(route, tuple) and route[0] == "slow":
                    server.stop.wait(route[1])  # returns early at shutdown
                    route = PAYLOAD
                if isinstance(route, int):
                    self.send_error(route)
                    return
                body = route[1] if isinstance(route, tuple) else route
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) * (2 if isinstance(route, tuple) else 1)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # the client hanging up on "slow" is expected
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()

    @property
    def requests(self) -> int:
        return sum(self.hits.values())


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@pytest.fixture
def corrupt():
    return bytes([PAYLOAD[0] ^ 1]) + PAYLOAD[1:]


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert cache_dir("mnist") == tmp_path / "c" / "mnist"
    monkeypatch.delenv("TINYGAN_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "tinygan"
    assert not (tmp_path / "home").exists(), "resolving the folder must not create it"


def test_md5sum(tmp_path):
    (tmp_path / "f").write_bytes(PAYLOAD)
    assert md5sum(tmp_path / "f") == PAYLOAD_MD5


def test_good_file_is_downloaded_and_verified(tmp_path):
    lines = []
    with LocalServer({"/f.bin": PAYLOAD}) as srv:
        dest = download([srv.url + "/f.bin"], tmp_path / "d" / "f.bin", PAYLOAD_MD5, timeout=5, verbose=lines.append)
        assert srv.requests == 1
    assert dest == tmp_path / "d" / "f.bin" and dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent, "f.bin") == []
    assert lines == [f"downloaded f.bin from {srv.url}/f.bin"]


def test_corrupt_mirror_is_skipped_and_not_kept(tmp_path, corrupt):
    with LocalServer({"/bad/f.bin": corrupt, "/good/f.bin": PAYLOAD}) as srv:
        dest = download([srv.url + "/bad/f.bin", srv.url + "/good/f.bin"], tmp_path / "f.bin", PAYLOAD_MD5, timeout=5)
        assert srv.hits == {"/bad/f.bin": 1, "/good/f.bin": 1}
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(tmp_path, "f.bin") == []


def test_missing_file_moves_on_to_next_mirror(tmp_path):
    with LocalServer({"/good/f.bin": PAYLOAD}) as srv:
        urls = [closed_port_url() + "/f.bin", srv.url + "/gone/f.bin", srv.url + "/good/f.bin"]
        dest = download(urls, tmp_path / "f.bin", PAYLOAD_MD5, timeout=5)
        assert srv.hits == {"/gone/f.bin": 1, "/good/f.bin": 1}
    assert dest.read_bytes() == PAYLOAD


def test_slow_and_short_mirrors_fail_within_the_timeout(tmp_path):
    routes = {"/slow": ("slow", 10.0), "/short": ("short", PAYLOAD[:100]), "/good": PAYLOAD}
    with LocalServer(routes) as srv:
        start = time.monotonic()
        dest = download([srv.url + "/slow", srv.url + "/short", srv.url + "/good"], tmp_path / "f", None, timeout=0.5)
        elapsed = time.monotonic() - start
        assert srv.hits == {"/slow": 1, "/short": 1, "/good": 1}
    assert elapsed < 5
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(tmp_path, "f") == []


def test_every_mirror_failing_says_what_each_said(tmp_path, corrupt):
    (tmp_path / "f.bin").write_bytes(b"previous good copy")
    with LocalServer({"/bad/f.bin": corrupt, "/short/f.bin": ("short", b"x")}) as srv:
        dead = closed_port_url()
        urls = [srv.url + "/gone/f.bin", srv.url + "/bad/f.bin", srv.url + "/short/f.bin", dead + "/f.bin", "ftp://x/f"]
        with pytest.raises(DownloadError) as info:
            download(urls, tmp_path / "f.bin", PAYLOAD_MD5, timeout=5)
        assert srv.requests == 3
    message = str(info.value)
    assert "could not download f.bin (5 mirror(s) tried)" in message
    bad_md5 = hashlib.md5(corrupt).hexdigest()
    assert f"md5 mismatch for f.bin: expected {PAYLOAD_MD5}, received {bad_md5}" in message
    assert "HTTP 404" in message and "cut short" in message and "Connection" in message and "scheme 'ftp'" in message
    assert [url for url, _ in info.value.attempts] == urls
    # a failed download never touches what was there
    assert (tmp_path / "f.bin").read_bytes() == b"previous good copy"
    assert leftovers(tmp_path, "f.bin") == []


def test_no_md5_accepts_what_arrives(tmp_path):
    with LocalServer({"/f": b"anything"}) as srv:
        assert download(srv.url + "/f", tmp_path / "f").read_bytes() == b"anything"


# ---------------------------------------------------------------- the loaders' download paths


def test_load_mnist_downloads_through_mirrors_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    genuine = {name: (EMBEDDED / name).read_bytes() for name in names}
    routes = {
        "/bad/t10k-images-idx3-ubyte.gz": genuine[names[0]][:-10] + b"0123456789",
        "/bad/t10k-labels-idx1-ubyte.gz": genuine[names[1]][:-1] + b"!",
        **{f"/good/{name}": body for name, body in genuine.items()},
    }
    lines = []
    with LocalServer(routes) as srv:
        mirrors = [srv.url + "/none/", srv.url + "/bad/", srv.url + "/good"]
        data = load_mnist(None, "test", verbose=lines.append, mirrors=mirrors, timeout=5)
        assert srv.requests == 6  # each file: 404, md5 mismatch, good
        again = load_mnist(None, "test", verbose=lines.append, mirrors=mirrors, timeout=5)
        assert srv.requests == 6, "the second load must come from the cache"
    images, labels = data
    assert data.source.kind == "download" and again.source.kind == "cache"
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    np.testing.assert_array_equal(again.images, images)
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == names
    assert all(md5sum(tmp_path / "cache" / "mnist" / n) == MNIST_MD5[n] for n in names)
    assert lines == [f"downloaded {n} from {srv.url}/good/{n}" for n in names]


def test_load_mnist_falls_back_when_every_mirror_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    lines = []
    with LocalServer({}) as srv:
        data = load_mnist(None, "train", verbose=lines.append, mirrors=[srv.url, closed_port_url()], timeout=5)
        assert srv.requests == 1  # gave up after the first file
    assert data.source.kind == "embedded" and data.images.shape == (10000, 28, 28)
    assert len(lines) == 1 and "download failed" in lines[0] and "HTTP 404" in lines[0]
    assert "embedded MNIST test set" in lines[0]


def test_cifar_download_with_wrong_md5_is_refused_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    with LocalServer({"/cifar-10-python.tar.gz": PAYLOAD}) as srv:
        with pytest.raises(DatasetNotFoundError) as info:
            load_cifar10(None, urls=[srv.url + "/cifar-10-python.tar.gz"], timeout=5)
        assert srv.requests == 1
    message = str(info.value)
    assert f"expected c58f30108f718f92721af3b95e74349a, received {PAYLOAD_MD5}" in message
    assert "--data-dir" in message
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []
