"""netguard: private addresses are refused before any connection, redirects are
not followed, and responses are bounded. No network: DNS is simulated through
``netguard.resolver`` and the only servers are on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from whisperless.cloud import netguard
from whisperless.cloud.netguard import UnsafeURL
from whisperless.errors import InvalidParameter

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

FAKE_DNS = {
    "public.example": [PUBLIC_V4],
    "dual.example": [PUBLIC_V4, PUBLIC_V6],
    "xn--bcher-kva.example": [PUBLIC_V4],
    "localhost": ["127.0.0.1", "::1"],
    "internal.example": ["10.0.0.5"],
    "mixed.example": [PUBLIC_V4, "10.0.0.5"],
    "mixed-v6.example": [PUBLIC_V4, "fd00::1"],
    "metadata.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:192.168.0.1"],
    "local.test": ["127.0.0.1"],
    "pinned.test": ["127.0.0.1"],
    "other.test": ["127.0.0.1"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    """Every test resolves through this table; unknown names fail like NXDOMAIN."""
    looked_up = []

    def resolve(host, port):
        looked_up.append(host)
        if host not in FAKE_DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(FAKE_DNS[host])

    monkeypatch.setattr(netguard, "resolver", resolve)
    return looked_up


@pytest.fixture
def no_connect(monkeypatch):
    """Fail the test if anything tries to open a connection."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(socket.socket, "connect_ex", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)


# (url, a word the refusal message must contain)
REFUSED = [
    # loopback, in every spelling
    ("http://127.0.0.1/", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal
    ("http://0177.0.0.1/", "loopback"),  # octal
    ("http://0x7f.0.0.1/", "loopback"),  # hex
    ("http://0x7f000001/", "loopback"),  # hex, one number
    ("http://017700000001/", "loopback"),  # octal, one number
    ("http://127.1/", "loopback"),  # short
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
    ("http://[::127.0.0.1]/", "loopback"),  # IPv4-compatible
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 around 127.0.0.1
    # private ranges
    ("http://10.0.0.1/", "private"),
    ("http://10.255.255.254/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 around 10.0.0.1
    ("http://[2001:0:5ef5:79fb:0:0:f5ff:fffe]/", "private"),  # Teredo, client 10.0.0.1
    ("http://[fc00::1]/", "private"),  # unique-local
    ("http://[fd12:3456:789a::1]/", "private"),
    ("http://100.64.0.1/", "carrier-grade"),
    # link-local and cloud metadata
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.170.2/v2/credentials", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),  # 169.254.169.254, mapped, in hex
    ("http://2852039166/", "metadata"),  # 169.254.169.254 in decimal
    # unspecified, multicast, broadcast, reserved
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    # schemes
    ("file:///etc/passwd", "only http"),
    ("gopher://public.example/", "only http"),
    ("ftp://public.example/", "only http"),
    ("dict://public.example:11211/", "only http"),
    ("javascript:alert(1)", "only http"),
    ("public.example/path", "only http"),
    # credentials and host-confusion tricks
    ("http://user:pass@public.example/", "credentials"),
    ("http://public.example@127.0.0.1/", "credentials"),
    ("http://public.example\\@127.0.0.1/", "credentials"),
    ("http://%31%32%37.0.0.1/", "forbidden"),
    ("http://[fe80::1%25eth0]/", "forbidden"),
    (" http://127.0.0.1/", "whitespace"),
    ("http://127.0.0.1\t/", "whitespace"),
    ("http:///path", "no host"),
    ("http://pub lic.example/", "whitespace"),
    # ports
    ("http://public.example:22/", "port"),
    ("http://public.example:6379/", "port"),
    ("https://public.example:0/", "port"),
    ("http://public.example:99999/", "port"),
    ("http://public.example:abc/", "port"),
    # DNS names that lead inside
    ("http://internal.example/", "private"),
    ("https://metadata.example/", "metadata"),
    ("http://mapped.example/", "private"),
    ("http://mixed.example/", "private"),  # one public, one private address
    ("http://mixed-v6.example/", "private"),
    ("http://nxdomain.example/", "cannot resolve"),
]


@pytest.mark.parametrize("url,reason", REFUSED)
def test_check_url_refuses(url, reason, no_connect):
    with pytest.raises(UnsafeURL) as info:
        netguard.check_url(url, field="callbackURL")
    err = info.value
    assert err.field == "callbackURL"
    assert err.code == "unsafe_url"
    assert isinstance(err, InvalidParameter)
    assert reason in err.message, err.message


@pytest.mark.parametrize("url,reason", REFUSED)
def test_safe_request_refuses_without_connecting(url, reason, no_connect):
    with pytest.raises(UnsafeURL) as info:
        netguard.safe_request("GET", url, field="url")
    assert info.value.field == "url"
    assert reason in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080/",
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://internal.example/",
        "http://public.example:9999/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_allow_loopback_keeps_everything_else_refused(url, no_connect):
    with pytest.raises(UnsafeURL):
        netguard.check_url(url, field="url", allow_loopback=True)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765/hook", "http://localhost:1234/", "http://[::1]:9/", "http://127.1/"]
)
def test_allow_loopback_lets_loopback_through_on_any_port(url):
    target = netguard.check_url(url, field="url", allow_loopback=True)
    assert all(addr in ("127.0.0.1", "::1") for addr in target.addresses)


def test_loopback_odd_port_refused_by_default():
    with pytest.raises(UnsafeURL, match="port"):
        netguard.check_url("http://127.0.0.1:8765/", field="url")


@pytest.mark.parametrize(
    "url,host,port,path,addresses",
    [
        (f"http://{PUBLIC_V4}/", PUBLIC_V4, 80, "/", [PUBLIC_V4]),
        ("https://Public.Example/a%20b?x=1#frag", "public.example", 443, "/a%20b?x=1", [PUBLIC_V4]),
        ("http://public.example:8080", "public.example", 8080, "/", [PUBLIC_V4]),
        ("https://public.example:8443/x", "public.example", 8443, "/x", [PUBLIC_V4]),
        ("HTTPS://dual.example/", "dual.example", 443, "/", [PUBLIC_V4, PUBLIC_V6]),
        (f"https://[{PUBLIC_V6}]/", PUBLIC_V6, 443, "/", [PUBLIC_V6]),
        ("http://bücher.example/ä", "xn--bcher-kva.example", 80, "/%C3%A4", [PUBLIC_V4]),
        ("http://1572394766/", PUBLIC_V4, 80, "/", [PUBLIC_V4]),  # decimal form
    ],
)
def test_public_targets_pass(url, host, port, path, addresses, no_connect):
    target = netguard.check_url(url, field="url")
    assert (target.host, target.port, target.path_and_query, target.addresses) == (host, port, path, addresses)
    assert target.scheme in ("http", "https")


@pytest.mark.parametrize("form", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1"])
def test_numeric_forms_match_what_getaddrinfo_does(form):
    # The system resolver parses these numerically (no DNS query) to 127.0.0.1;
    # netguard must judge the same address.
    system = {info[4][0] for info in socket.getaddrinfo(form, 80, type=socket.SOCK_STREAM)}
    assert system == {"127.0.0.1"}
    assert netguard.check_url(f"http://{form}/", field="url", allow_loopback=True).addresses == ["127.0.0.1"]


def test_each_address_is_judged(fake_dns):
    with pytest.raises(UnsafeURL, match="10.0.0.5"):
        netguard.check_url("http://mixed.example/", field="url")
    assert fake_dns == ["mixed.example"]


# ------------------------------------------------------------ local servers


@dataclass
class Hit:
    method: str
    path: str
    headers: dict
    body: bytes


@contextlib.contextmanager
def http_server(respond, tls: ssl.SSLContext | None = None):
    """A threaded server on 127.0.0.1; ``respond(hit)`` returns (status, headers, body)."""
    hits: list[Hit] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self):
            length = int(self.headers.get("Content-Length") or 0)
            hit = Hit(self.command, self.path, dict(self.headers), self.rfile.read(length))
            hits.append(hit)
            status, headers, body = respond(hit)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = handle_one  # noqa: N815 - http.server's handler names

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def raw_server(reply: bytes):
    """Answers every connection with ``reply`` verbatim, then closes (no Content-Length needed)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_redirect_is_returned_not_followed():
    with http_server(lambda hit: (200, {}, b"secret")) as (inner_port, inner_hits):
        location = f"http://127.0.0.1:{inner_port}/latest/meta-data/"
        with http_server(lambda hit: (302, {"Location": location}, b"")) as (port, hits):
            response = netguard.safe_request(
                "GET", f"http://127.0.0.1:{port}/audio.mp3", field="url", allow_loopback=True
            )
    assert response.status == 302
    assert response.headers["location"] == location
    assert len(hits) == 1
    assert inner_hits == []


def test_connects_to_checked_address_keeping_the_host_name():
    # "local.test" exists only in the fake DNS: reaching the server proves the
    # connection went to the checked IP, and the Host header keeps the name.
    with http_server(lambda hit: (200, {"X-Reply": "yes"}, b"hello")) as (port, hits):
        response = netguard.safe_request(
            "POST",
            f"http://local.test:{port}/p?q=1",
            field="url",
            allow_loopback=True,
            headers={"Content-Type": "text/plain"},
            data="payload",
        )
    assert (response.status, response.body, response.headers["x-reply"]) == (200, b"hello", "yes")
    assert hits[0].method == "POST"
    assert hits[0].path == "/p?q=1"
    assert hits[0].headers["Host"] == f"local.test:{port}"
    assert hits[0].body == b"payload"


def test_max_bytes_enforced_by_content_length():
    with http_server(lambda hit: (200, {}, b"x" * 200_000)) as (port, _):
        with pytest.raises(netguard.ResponseTooLarge, match="100000"):
            netguard.safe_request(
                "GET", f"http://127.0.0.1:{port}/", field="url", allow_loopback=True, max_bytes=100_000
            )


def test_max_bytes_enforced_while_reading_without_content_length(tmp_path):
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n" + b"x" * 300_000
    dest = tmp_path / "audio.bin"
    with raw_server(reply) as port:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(netguard.ResponseTooLarge):
            netguard.safe_request("GET", url, field="url", allow_loopback=True, max_bytes=100_000)
        with pytest.raises(netguard.ResponseTooLarge):
            netguard.download(url, dest, max_bytes=100_000, allow_loopback=True)
        assert not dest.exists()  # no truncated file left behind
        ok = netguard.safe_request("GET", url, field="url", allow_loopback=True, max_bytes=300_000)
    assert len(ok.body) == 300_000


def test_download_writes_the_file(tmp_path):
    payload = bytes(range(256)) * 1000
    dest = tmp_path / "in.wav"
    with http_server(lambda hit: (200, {"Content-Type": "audio/wav"}, payload)) as (port, _):
        response = netguard.download(
            f"http://127.0.0.1:{port}/a.wav", dest, max_bytes=len(payload), allow_loopback=True
        )
    assert response.status == 200
    assert response.body == b""
    assert dest.read_bytes() == payload


@pytest.mark.parametrize("status,permanent", [(404, True), (302, True), (503, False)])
def test_download_non_2xx_fails(tmp_path, status, permanent):
    dest = tmp_path / "in.wav"
    headers = {"Location": "http://127.0.0.1:1/"} if status == 302 else {}
    with http_server(lambda hit: (status, headers, b"nope")) as (port, _):
        with pytest.raises(netguard.DownloadFailed) as info:
            netguard.download(f"http://127.0.0.1:{port}/", dest, max_bytes=1000, allow_loopback=True)
    err = info.value
    assert err.code == "download_failed" and err.field == "url"
    assert str(status) in err.message
    assert err.permanent is permanent
    assert not dest.exists()


def test_unreachable_port_is_a_fetch_error():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    with pytest.raises(netguard.FetchError) as info:
        netguard.safe_request("GET", f"http://127.0.0.1:{port}/", field="url", allow_loopback=True, timeout=(1, 1))
    assert info.value.permanent is False


# ------------------------------------------------------------ TLS with a pinned address


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=pinned.test",
            "-addext",
            "subjectAltName=DNS:pinned.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return str(cert), context


def test_https_verifies_the_name_while_connecting_to_the_ip(certificate, monkeypatch):
    ca, context = certificate
    monkeypatch.setattr(netguard, "CA_BUNDLE", ca)
    with http_server(lambda hit: (200, {}, b"tls ok"), tls=context) as (port, hits):
        response = netguard.safe_request(
            "GET", f"https://pinned.test:{port}/", field="url", allow_loopback=True, timeout=(2, 2)
        )
        assert response.body == b"tls ok"
        assert hits[0].headers["Host"] == f"pinned.test:{port}"
        # Same IP, but the certificate is not for this name: verification must fail.
        with pytest.raises(netguard.FetchError, match="certificate"):
            netguard.safe_request(
                "GET", f"https://other.test:{port}/", field="url", allow_loopback=True, timeout=(2, 2)
            )
