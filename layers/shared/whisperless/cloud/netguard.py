"""Fetch user-supplied URLs (``url``, ``callbackURL``) without becoming a proxy
into the private network (SSRF).

The rules:

* only ``http``/``https``, no credentials in the URL, a host is required;
* every address the host resolves to (all A/AAAA records) must be public:
  loopback, private, link-local, unique-local, CGNAT, unspecified, multicast,
  reserved, broadcast and cloud-metadata addresses are refused, and IPv6 forms
  that embed an IPv4 address (``::ffff:a.b.c.d``, ``::a.b.c.d``, 6to4, Teredo,
  NAT64) are judged by the IPv4 inside;
* numeric host spellings that resolvers accept (``2130706433``, ``0177.0.0.1``,
  ``0x7f.0.0.1``, ``127.1``) are canonicalised first, so they are judged as the
  address they really mean;
* port policy: public targets may use 80, 443, 8080 and 8443 only (the usual web
  ports, so the service cannot be used to probe arbitrary services on public
  hosts). With ``allow_loopback=True`` (local stack, tests) loopback targets may
  use any port; everything else keeps the public rules.

:func:`safe_request` connects to the very address that was checked (no second
DNS lookup, so no DNS-rebinding window) while keeping the host name for the
``Host`` header, TLS SNI and certificate verification. Redirects are never
followed, and the response size and total time are bounded.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import string
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

import urllib3

from ..errors import InvalidParameter, WhisperlessError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PUBLIC_PORTS = frozenset({80, 443, 8080, 8443})
#: Longer URLs are refused: far beyond what browsers, CDNs and servers take (8 KB), and a job
#: message carrying one must fit in SQS's message limit.
MAX_URL_CHARS = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}

#: In-memory responses are capped at this size unless the caller says otherwise.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: Whole-request wall-clock bound (connect + send + read) unless the caller says otherwise.
DEFAULT_MAX_SECONDS = 300.0
_CHUNK = 64 * 1024

#: CA bundle for HTTPS verification; None means certifi (as requests does) or the system store.
CA_BUNDLE: str | None = None

# Named for clearer messages; all of them are also non-global in other ways.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_IPV4_COMPAT = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeURL(InvalidParameter):
    """A URL we refuse to fetch or post to."""

    code = "unsafe_url"


class FetchError(WhisperlessError):
    """The remote end could not be reached or did not answer in time."""

    code = "fetch_failed"
    permanent = False


class ResponseTooLarge(WhisperlessError):
    """The response body exceeded the caller's ``max_bytes``."""

    code = "response_too_large"
    caller_fault = True  # the url the caller gave serves more than the limit


class DownloadFailed(WhisperlessError):
    """The server answered, but not with the file (non-2xx)."""

    code = "download_failed"
    caller_fault = True  # the url the caller gave does not serve the file


@dataclass
class ResolvedURL:
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    path_and_query: str
    addresses: list[str] = dc_field(default_factory=list)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


@dataclass
class SafeResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


# --------------------------------------------------------------------------- DNS


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


#: ``resolver(host, port) -> [ip, ...]``; replaced in tests to simulate DNS.
resolver: Callable[[str, int], list[str]] = _system_resolver


def _literal_address(host: str) -> IPAddress | None:
    """The address a numeric host means, including the legacy IPv4 spellings
    (decimal, octal, hex, short) that ``inet_aton``/``getaddrinfo`` accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Only digits, hex letters, 'x' and dots can be a legacy numeric form;
    # the regex also keeps inet_aton from accepting "1.2.3.4 trailing junk".
    if re.fullmatch(r"[0-9a-fx.]+", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _resolve(host: str, port: int, field: str) -> list[IPAddress]:
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    try:
        raw = resolver(host, port)
    except (OSError, UnicodeError, ValueError):
        raise UnsafeURL(f"cannot resolve host {host!r}", field=field) from None
    out: list[IPAddress] = []
    for text in raw:
        # A scoped link-local answer ("fe80::1%eth0") is refused anyway; keep the address.
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    if not out:
        raise UnsafeURL(f"cannot resolve host {host!r}", field=field)
    return out


# ------------------------------------------------------------------ addresses


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (and would route to)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in _NAT64 or (ip in _IPV4_COMPAT and int(ip) > 1):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def address_problem(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` must not be contacted, or None when it is a public address."""
    if ip.version == 6:
        for inner in _embedded_ipv4(ip):
            problem = address_problem(inner, allow_loopback=allow_loopback)
            if problem:
                return f"embeds {inner}, which {problem}"
        if ip in _NAT64_LOCAL:
            return "is a local-use NAT64 address"
        if ip.is_site_local:
            return "is a site-local address"
    if ip in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "is a loopback address"
    if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
        return "is an unspecified address"
    if ip.is_link_local:
        return "is a link-local address"
    if ip.version == 4 and ip in _CGNAT:
        return "is a carrier-grade NAT address"
    if ip.is_multicast:
        return "is a multicast address"
    if ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    if ip.is_reserved:
        return "is a reserved address"
    if ip.is_private:
        return "is a private address"
    if not ip.is_global:
        return "is not a public address"
    return None


# ------------------------------------------------------------------ URL check

_HOST_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_.])?")


def _ascii_host(netloc: str, hostname: str | None, field: str) -> str:
    if not hostname:
        raise UnsafeURL("URL has no host", field=field)
    if "[" in netloc:
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise UnsafeURL(f"invalid IPv6 host {hostname!r}", field=field) from None
        return hostname
    try:
        host = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL(f"invalid host name {hostname!r}", field=field) from None
    if not _HOST_RE.fullmatch(host) or ".." in host:
        raise UnsafeURL(f"invalid host name {hostname!r}", field=field)
    return host


def _port(parts: urllib.parse.SplitResult, scheme: str, field: str) -> int:
    try:
        port = parts.port
    except ValueError:
        raise UnsafeURL("URL has an invalid port", field=field) from None
    if port is None:
        return DEFAULT_PORTS[scheme]
    if port == 0:
        raise UnsafeURL("URL has an invalid port", field=field)
    return port


def _path_and_query(parts: urllib.parse.SplitResult) -> str:
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # Percent-encode anything outside printable ASCII; keep existing escapes as they are.
    return urllib.parse.quote(path, safe=string.punctuation)


def check_url(url: str, *, field: str, allow_loopback: bool = False) -> ResolvedURL:
    """Parse, resolve and judge ``url``; raise :class:`UnsafeURL` (naming ``field``)
    unless every address it leads to may be contacted."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL("URL is empty", field=field)
    if len(url) > MAX_URL_CHARS:
        raise InvalidParameter(f"URL is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted", field=field)
    # urlsplit silently drops some whitespace/control characters; refuse them instead.
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeURL("URL contains whitespace or control characters", field=field)
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeURL(f"only http and https URLs are allowed, not {scheme or 'none'!r}", field=field)
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UnsafeURL("URL must not contain credentials", field=field)
    if "\\" in parts.netloc or "%" in parts.netloc:
        raise UnsafeURL("URL host contains forbidden characters", field=field)
    host = _ascii_host(parts.netloc, parts.hostname, field)
    port = _port(parts, scheme, field)
    if port not in PUBLIC_PORTS and not allow_loopback:
        raise UnsafeURL(f"port {port} is not allowed (use 80, 443, 8080 or 8443)", field=field)

    literal = _literal_address(host)
    if literal is not None:
        host = str(literal)  # "0x7f.1" is sent (Host header) as what it means
    addresses = _resolve(host, port, field)
    for ip in addresses:
        problem = address_problem(ip, allow_loopback=allow_loopback)
        if problem:
            raise UnsafeURL(f"host {host!r} resolves to {ip}, which {problem}", field=field)
    if port not in PUBLIC_PORTS and not all(ip.is_loopback for ip in addresses):
        raise UnsafeURL(f"port {port} is only allowed for loopback targets", field=field)
    return ResolvedURL(scheme, host, port, _path_and_query(parts), [str(ip) for ip in addresses])


# ------------------------------------------------------------------ requests


def _ca_bundle() -> str | None:
    if CA_BUNDLE:
        return CA_BUNDLE
    try:
        import certifi
    except ImportError:  # urllib3 then falls back to the system store
        return None
    return certifi.where()


def _pool(target: ResolvedURL, ip: str, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(ip, target.port, timeout=timeout, maxsize=1, retries=False, block=False)
    # Connect to the checked IP but present and verify the name (SNI + certificate).
    server_hostname = target.host if _literal_address(target.host) is None else None
    return urllib3.HTTPSConnectionPool(
        ip,
        target.port,
        timeout=timeout,
        maxsize=1,
        retries=False,
        block=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=_ca_bundle(),
        server_hostname=server_hostname,
    )


def _open(target, method, headers, data, timeout):
    """Send the request to the first checked address that accepts a connection."""
    last_error: Exception | None = None
    for ip in target.addresses:
        pool = _pool(target, ip, timeout)
        try:
            response = pool.urlopen(
                method,
                target.path_and_query,
                body=data,
                headers=headers,
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
            )
            return pool, response
        except urllib3.exceptions.NewConnectionError as exc:
            # Refused/unreachable (e.g. an IPv6 answer without IPv6 egress): try the next one.
            last_error = exc
            pool.close()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            pool.close()
            raise FetchError(f"request to {target.host} failed: {_describe(exc)}") from None
    raise FetchError(f"cannot connect to {target.host}: {_describe(last_error)}")


def _describe(exc: Exception | None) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(exc).__name__


def _read_body(response, sink, max_bytes: int, deadline: float) -> int:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(f"response is {declared} bytes, more than the limit of {max_bytes}")
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError("response took too long")
        try:
            chunk = response.read1(_CHUNK, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise FetchError(f"reading the response failed: {_describe(exc)}") from None
        if not chunk:
            return total
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(f"response is larger than the limit of {max_bytes} bytes")
        sink.write(chunk)


class _Memory:
    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self.parts.append(chunk)


def safe_request(
    method: str,
    url: str,
    *,
    field: str,
    allow_loopback: bool = False,
    headers: dict[str, str] | None = None,
    data: bytes | str | None = None,
    timeout: tuple[float, float] = (5, 30),
    max_bytes: int | None = None,
    stream_to: str | os.PathLike | None = None,
    max_seconds: float | None = None,
    read_body: bool = True,
) -> SafeResponse:
    """One HTTP request to a checked URL. ``timeout`` is (connect, read) per socket
    operation; ``max_seconds`` bounds the whole exchange. A 3xx comes back as-is.
    ``stream_to`` writes the body to that file instead of ``body``; ``read_body=False``
    ignores the body entirely (status and headers only)."""
    target = check_url(url, field=field, allow_loopback=allow_loopback)
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + (DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds)
    send_headers = {"User-Agent": "whisperless", "Accept-Encoding": "identity"}
    send_headers.update(headers or {})
    send_headers["Host"] = target.host_header
    if isinstance(data, str):
        data = data.encode("utf-8")

    pool, response = _open(
        target, method.upper(), send_headers, data, urllib3.Timeout(connect=timeout[0], read=timeout[1])
    )
    try:
        body = b""
        if read_body and stream_to is not None:
            _stream_to_file(response, stream_to, limit, deadline)
        elif read_body:
            memory = _Memory()
            _read_body(response, memory, limit, deadline)
            body = b"".join(memory.parts)
        # Indexing joins repeated headers ("a, b") instead of keeping only the last.
        headers_out = {name.lower(): response.headers[name] for name in response.headers}
        return SafeResponse(response.status, headers_out, body)
    finally:
        response.close()
        pool.close()


def _stream_to_file(response, path, max_bytes: int, deadline: float) -> None:
    try:
        with open(path, "wb") as fh:
            _read_body(response, fh, max_bytes, deadline)
    except BaseException:
        # Never leave a truncated file behind that looks like a finished download.
        _remove(path)
        raise


def _remove(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def passing_failure(status: int) -> bool:
    """An HTTP answer that may clear up later (5xx, 408, 429): worth retrying, for downloads
    and callbacks alike; any other failure will not change."""
    return status >= 500 or status in (408, 429)


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    max_bytes: int,
    field: str = "url",
    allow_loopback: bool = False,
    timeout: tuple[float, float] = (5, 30),
    max_seconds: float | None = None,
) -> SafeResponse:
    """GET ``url`` into ``dest`` (at most ``max_bytes``). Raises :class:`UnsafeURL`,
    :class:`FetchError`, :class:`ResponseTooLarge` or :class:`DownloadFailed`; on any
    failure ``dest`` does not exist afterwards."""
    response = safe_request(
        "GET",
        url,
        field=field,
        allow_loopback=allow_loopback,
        timeout=timeout,
        max_bytes=max_bytes,
        stream_to=dest,
        max_seconds=max_seconds,
    )
    if not 200 <= response.status < 300:
        _remove(dest)
        error = DownloadFailed(
            f"downloading {field} failed: the server answered HTTP {response.status}"
            + (" (redirects are not followed)" if 300 <= response.status < 400 else ""),
            field=field,
        )
        error.permanent = not passing_failure(response.status)
        raise error
    return response
