"""The SSRF guard: address policy, URL checks when a webhook is added, and the guarded session.

Real sockets are only ever opened to loopback: names such as "internal.example" resolve through
an injected resolver, and a tripwire on `socket.socket.connect` fails the test (before anything
is sent) if any connection to a non-loopback address is attempted.
"""

from __future__ import annotations

import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from urllib3.exceptions import MaxRetryError

from tracker.webhooks.guard import (
    MAX_URL_LENGTH,
    AddressPolicy,
    RefusedURL,
    check_url,
    system_resolver,
    vet_url,
)
from tracker.webhooks.guarded_http import RefusedAddress, RefusedConnection, guarded_session

LOOPBACK_ONLY = AddressPolicy.from_setting("127.0.0.0/8")
NAMES = {
    "hooks.example": ["127.0.0.1"],
    "internal.example": ["10.1.2.3"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.215.14", "10.1.2.3"],
    "public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "v6-internal.example": ["fd00::1"],
    "split.example": ["10.1.2.3", "127.0.0.1"],
    "dual.example": ["::1", "127.0.0.1"],
}


@dataclass
class RecordingResolver:
    """Resolves from a table and records every question; unknown names do not resolve."""

    table: dict[str, list[str]] = field(default_factory=lambda: dict(NAMES))
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


@pytest.fixture(autouse=True)
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every outgoing TCP connect in the test; one to a non-loopback address fails the test."""
    made: list[tuple[Any, ...]] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        host = str(address[0]).split("%")[0]
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"the test tried to connect to {address}")
        made.append(tuple(address))
        original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return made


# --- AddressPolicy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2001:4860:4860::8888", None),
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "::1 is loopback"),
        ("10.0.0.5", "10.0.0.5 is private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "169.254.169.254 is link-local"),
        ("fe80::1", "link-local"),
        ("100.64.1.1", "100.64.1.1 is carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "224.0.0.1 is multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "255.255.255.255 is broadcast"),
        ("0.0.0.0", "0.0.0.0 is unspecified"),
        ("::", ":: is unspecified"),
        ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
        ("198.18.0.1", "private"),  # benchmarking
        ("fec0::1", "private"),  # deprecated site-local
        ("64:ff9b:1::a00:1", "64:ff9b:1::a00:1 is "),  # local-use NAT64 (reserved in 3.11)
        # IPv6 forms that carry an IPv4 address are judged by that address
        ("::ffff:10.0.0.1", "embeds 10.0.0.1, which is private"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1, which is loopback"),
        ("::ffff:169.254.169.254", "embeds 169.254.169.254, which is link-local"),
        ("::ffff:8.8.8.8", None),
        ("2002:a00:1::1", "embeds 10.0.0.1, which is private"),  # 6to4
        ("2002:a9fe:a9fe::1", "embeds 169.254.169.254, which is link-local"),
        ("2002:808:808::1", None),
        ("64:ff9b::10.0.0.1", "embeds 10.0.0.1, which is private"),  # NAT64
        ("64:ff9b::127.0.0.1", "embeds 127.0.0.1, which is loopback"),
        ("64:ff9b::8.8.8.8", None),
        ("::10.0.0.1", "reserved"),  # deprecated IPv4-compatible
        ("not-an-ip", "'not-an-ip' is not an IP address"),
    ],
)
def test_default_policy_refuses_internal_addresses(address: str, reason: str | None) -> None:
    policy = AddressPolicy()
    got = policy.refusal_reason(address)
    if reason is None:
        assert got is None
        assert policy.is_allowed(address)
        assert policy.is_allowed(ipaddress.ip_address(address))
    else:
        assert got is not None and reason in got
        assert not policy.is_allowed(address)


def test_allowed_networks_open_exactly_their_addresses() -> None:
    policy = AddressPolicy.from_setting("127.0.0.0/8, ::1, 10.1.0.0/16")
    for address in ("127.0.0.1", "127.9.9.9", "::1", "10.1.2.3", "::ffff:127.0.0.1"):
        assert policy.is_allowed(address), address
        assert policy.refusal_reason(address) is None
    for address in ("10.2.0.1", "192.168.0.1", "169.254.169.254", "::2"):
        assert not policy.is_allowed(address), address
    assert policy.is_allowed(ipaddress.IPv4Address("10.1.200.1"))
    # An IPv6 network never admits an IPv4 address (ipaddress would compare bare integers).
    assert not AddressPolicy.from_setting("::/96").is_allowed("10.0.0.1")


@pytest.mark.parametrize(
    ("setting", "networks"),
    [
        ("", ()),
        ("   ", ()),
        ("127.0.0.0/8", ("127.0.0.0/8",)),
        ("127.0.0.0/8, ::1", ("127.0.0.0/8", "::1/128")),
        (" 10.0.0.1 ,fd00::/8, ", ("10.0.0.1/32", "fd00::/8")),
        ("10.0.0.0/8,10.0.0.0/8", ("10.0.0.0/8",)),
    ],
)
def test_allowed_networks_setting_parses(setting: str, networks: tuple[str, ...]) -> None:
    policy = AddressPolicy.from_setting(setting)
    assert policy.allowed_networks == tuple(ipaddress.ip_network(n) for n in networks)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("localhost", "'localhost' is not an IP network or address"),
        ("127.0.0.0/8, intranet", "'intranet'"),
        ("10.0.0.0/33", "'10.0.0.0/33'"),
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("127.0.0.0/8; ::1", "'127.0.0.0/8; ::1'"),
        ("::1/129", "'::1/129'"),
    ],
)
def test_a_bad_allowed_networks_setting_names_the_entry(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match="TRACKER_WEBHOOK_ALLOWED_NETWORKS") as raised:
        AddressPolicy.from_setting(setting)
    assert message in str(raised.value)


# --- check_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("ftp://hooks.example.com/x", "must use http:// or https://"),
        ("javascript:alert(1)", "must use http:// or https://"),
        ("file:///etc/passwd", "must use http:// or https://"),
        ("hooks.example.com/x", "http"),
        ("http:///no-host", "has no host"),
        ("http:no-slashes", "has no host"),
        ("https://example.com/" + "x" * (MAX_URL_LENGTH - 19), "2049 characters long"),
        ("https://user:secret@public.example/x", "user name or password"),
        ("https://token@public.example/x", "user name or password"),
        ("https://public.example:0/x", "port 0"),
        ("https://public.example:65536/x", "invalid port"),
        ("https://public.example:http/x", "invalid port"),
        ("http://public.example/a b", "spaces or control characters"),
        ("http://public.example/a\r\nX-Injected: 1", "spaces or control characters"),
        ("http://[::1/x", "not a valid URL"),
        ("http://10.0.0.5/hook", "points to 10.0.0.5, a private address; refused"),
        ("http://127.0.0.1:8080/hook", "127.0.0.1, a loopback address"),
        ("http://[::1]/hook", "::1, a loopback address"),
        ("http://[::ffff:10.0.0.1]/hook", "embeds 10.0.0.1, a private address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://100.64.0.1/hook", "a carrier-grade NAT address"),
        ("http://0.0.0.0/hook", "an unspecified address"),
        ("http://127.1/hook", "127.0.0.1, a loopback address"),  # getaddrinfo reads it so
        ("http://0x7f000001/hook", "127.0.0.1, a loopback address"),
        ("http://internal.example/hook", "internal.example, which resolves to 10.1.2.3, a private"),
        ("http://metadata.example/x", "resolves to 169.254.169.254, a link-local address"),
        ("http://v6-internal.example/x", "fd00::1, a private address"),
        ("http://mixed.example/hook", "resolves to 10.1.2.3, a private address"),
    ],
)
def test_check_url_refuses_bad_and_internal_urls(url: str, message: str) -> None:
    with pytest.raises(RefusedURL) as raised:
        check_url(url, AddressPolicy(), resolve=RecordingResolver())
    assert message in str(raised.value)


def test_check_url_messages_name_the_url_and_the_setting() -> None:
    with pytest.raises(RefusedURL) as raised:
        check_url("http://10.0.0.5/hook", AddressPolicy(), resolve=RecordingResolver())
    assert str(raised.value) == (
        "http://10.0.0.5/hook points to 10.0.0.5, a private address; refused "
        "(allow it with TRACKER_WEBHOOK_ALLOWED_NETWORKS)"
    )


def test_check_url_refuses_what_is_not_a_string() -> None:
    with pytest.raises(RefusedURL, match="must be a string"):
        check_url(None, AddressPolicy())  # type: ignore[arg-type]


def test_check_url_accepts_public_urls_and_strips_them() -> None:
    resolve = RecordingResolver()
    url = "  https://public.example/hooks/tracker?x=1  "
    assert check_url(url, AddressPolicy(), resolve=resolve) == url.strip()
    assert resolve.calls == [("public.example", 443)]
    assert check_url("http://public.example:8080/x", AddressPolicy(), resolve=resolve)
    assert resolve.calls[-1] == ("public.example", 8080)
    assert check_url("HTTP://8.8.8.8/x", AddressPolicy(), resolve=resolve) == "HTTP://8.8.8.8/x"
    assert check_url("https://[2001:4860:4860::8888]/x", AddressPolicy(), resolve=resolve)
    assert len(resolve.calls) == 2  # IP literals are judged as they are, not resolved


def test_check_url_at_the_length_limit_is_fine() -> None:
    url = "https://8.8.8.8/" + "x" * (MAX_URL_LENGTH - 16)
    assert len(url) == MAX_URL_LENGTH
    assert check_url(url, AddressPolicy()) == url


def test_check_url_allows_loopback_when_the_policy_does() -> None:
    resolve = RecordingResolver()
    assert check_url("http://127.0.0.1:8080/hook", LOOPBACK_ONLY, resolve=resolve)
    assert check_url("http://hooks.example:8080/hook", LOOPBACK_ONLY, resolve=resolve)
    with pytest.raises(RefusedURL, match="private"):
        check_url("http://split.example/hook", LOOPBACK_ONLY, resolve=resolve)


def test_a_name_that_does_not_resolve_now_is_accepted_with_a_warning() -> None:
    resolve = RecordingResolver()
    vetted = vet_url(" https://nowhere.example/hook ", AddressPolicy(), resolve=resolve)
    assert vetted.url == "https://nowhere.example/hook"
    assert vetted.warning is not None
    assert vetted.warning.startswith("the host nowhere.example does not resolve right now")
    assert "Name or service not known" in vetted.warning
    assert check_url("https://nowhere.example/hook", AddressPolicy(), resolve=resolve)


def test_a_dns_that_does_not_answer_is_a_warning_after_the_timeout() -> None:
    answered = threading.Event()

    def silent(host: str, port: int) -> list[str]:
        answered.wait(30)  # a DNS server that says nothing
        return []

    try:
        vetted = vet_url("https://slow.example/", AddressPolicy(), resolve=silent, timeout_s=0.2)
    finally:
        answered.set()
    assert vetted.warning is not None and "no DNS answer within 0.2 s" in vetted.warning


def test_names_under_invalid_fail_without_a_dns_query() -> None:
    for host in ("hooks.invalid", "a.b.INVALID.", "invalid"):
        with pytest.raises(socket.gaierror, match="RFC 6761"):
            system_resolver(host, 443)
    vetted = vet_url("https://receiver.tracker-test.invalid/hook", AddressPolicy())
    assert vetted.warning is not None and "does not resolve right now" in vetted.warning


def test_refused_literals_and_userinfo_are_still_refused_without_a_lookup() -> None:
    resolve = RecordingResolver()
    for url, message in (
        ("http://10.0.0.1/hook", "10.0.0.1, a private address"),
        ("http://169.254.169.254/latest", "169.254.169.254, a link-local address"),
        ("https://user:pass@hooks.example/x", "user name or password"),
        ("https://token@hooks.example/x", "user name or password"),
    ):
        with pytest.raises(RefusedURL, match=message):
            vet_url(url, AddressPolicy(), resolve=resolve)
    assert resolve.calls == []


def test_check_url_without_resolving_judges_only_ip_literals() -> None:
    resolve = RecordingResolver()
    url = "http://internal.example/hook"
    assert check_url(url, AddressPolicy(), resolve=resolve, resolve_host=False) == url
    with pytest.raises(RefusedURL, match="private"):
        check_url("http://10.0.0.5/", AddressPolicy(), resolve=resolve, resolve_host=False)
    assert resolve.calls == []


# --- guarded_session against a real server on loopback ------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str | None]]]

    def do_GET(self) -> None:
        self.received.append((self.path, self.headers["Host"]))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"hello {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Server:
    port: int
    received: list[tuple[str, str | None]]
    server_names: list[str | None]


def _serve(context: ssl.SSLContext | None = None) -> Iterator[Server]:
    received: list[tuple[str, str | None]] = []
    server_names: list[str | None] = []
    handler = type("Handler", (_Handler,), {"received": received})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if context is not None:

        def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            server_names.append(name)

        context.sni_callback = remember
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Server(httpd.server_address[1], received, server_names)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "2"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-subj", "/CN=hooks.example", "-addext", "subjectAltName=DNS:hooks.example"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _serve(context)


def _refusal(error: requests.exceptions.ConnectionError) -> RefusedAddress:
    [cause] = error.args
    assert isinstance(cause, MaxRetryError)
    assert isinstance(cause.reason, RefusedConnection)
    assert cause.reason.__cause__ is cause.reason.refused
    return cause.reason.refused


def test_by_default_loopback_is_refused_and_nothing_reaches_the_server(
    server: Server, connects: list[tuple[Any, ...]]
) -> None:
    resolve = RecordingResolver()
    with guarded_session(AddressPolicy(), resolve=resolve) as http:
        for url in (f"http://hooks.example:{server.port}/x", f"http://127.0.0.1:{server.port}/x"):
            with pytest.raises(requests.exceptions.ConnectionError) as raised:
                http.get(url, timeout=2, allow_redirects=False)
            assert "refused address" in str(raised.value)
            assert "127.0.0.1 is loopback" in str(raised.value)
    assert resolve.calls == [("hooks.example", server.port)]  # the IP literal is not resolved
    assert connects == []
    assert server.received == []


def test_the_refusal_is_a_requests_connection_error_carrying_the_reason(server: Server) -> None:
    with (
        guarded_session(AddressPolicy(), resolve=RecordingResolver()) as http,
        pytest.raises(requests.exceptions.ConnectionError) as raised,
    ):
        http.post(f"http://hooks.example:{server.port}/x", data=b"{}", timeout=2)
    refused = _refusal(raised.value)
    assert isinstance(refused, ConnectionError)
    assert refused.host == "hooks.example"
    assert refused.reasons == ("127.0.0.1 is loopback",)
    assert str(refused) == (
        "refused address: hooks.example resolves only to refused addresses "
        "(127.0.0.1 is loopback); allow it with TRACKER_WEBHOOK_ALLOWED_NETWORKS"
    )


def test_allowed_loopback_is_reached_and_keeps_the_host_name(
    server: Server, connects: list[tuple[Any, ...]]
) -> None:
    resolve = RecordingResolver()
    with guarded_session(LOOPBACK_ONLY, resolve=resolve) as http:
        response = http.get(f"http://hooks.example:{server.port}/x", timeout=2)
    assert response.status_code == 200
    assert server.received == [("/x", f"hooks.example:{server.port}")]
    assert response.text == f"hello hooks.example:{server.port}"
    assert resolve.calls == [("hooks.example", server.port)]
    assert connects == [("127.0.0.1", server.port)]


@pytest.mark.parametrize("host", ["internal.example", "metadata.example", "v6-internal.example"])
def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(
    host: str, connects: list[tuple[Any, ...]]
) -> None:
    resolve = RecordingResolver()
    with (
        guarded_session(LOOPBACK_ONLY, resolve=resolve) as http,
        pytest.raises(requests.exceptions.ConnectionError, match="refused address") as raised,
    ):
        http.post(f"https://{host}/hook", data=b"{}", timeout=2, allow_redirects=False)
    assert _refusal(raised.value).host == host
    assert resolve.calls == [(host, 443)]
    assert connects == []


def test_refused_addresses_are_skipped_and_an_allowed_one_is_used(
    server: Server, connects: list[tuple[Any, ...]]
) -> None:
    with guarded_session(LOOPBACK_ONLY, resolve=RecordingResolver()) as http:
        response = http.get(f"http://split.example:{server.port}/x", timeout=2)
    assert response.status_code == 200
    assert connects == [("127.0.0.1", server.port)]  # never 10.1.2.3


def test_the_next_allowed_address_is_tried_when_one_does_not_accept(server: Server) -> None:
    policy = AddressPolicy.from_setting("127.0.0.0/8, ::1")  # the server listens on IPv4 only
    with guarded_session(policy, resolve=RecordingResolver()) as http:
        response = http.get(f"http://dual.example:{server.port}/x", timeout=2)
    assert response.status_code == 200
    assert server.received == [("/x", f"dual.example:{server.port}")]


def test_a_redirect_to_the_metadata_service_is_an_answer_not_followed(
    server: Server, connects: list[tuple[Any, ...]]
) -> None:
    resolve = RecordingResolver()
    with guarded_session(LOOPBACK_ONLY, resolve=resolve) as http:
        response = http.get(
            f"http://hooks.example:{server.port}/redirect", timeout=2, allow_redirects=False
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "http://169.254.169.254/latest/meta-data"
        assert server.received == [("/redirect", f"hooks.example:{server.port}")]
        assert resolve.calls == [("hooks.example", server.port)]
        assert connects == [("127.0.0.1", server.port)]

        # Were a caller to follow it anyway, the guard refuses the metadata address.
        with pytest.raises(
            requests.exceptions.ConnectionError, match=r"169\.254\.169\.254 is link-local"
        ):
            http.get(f"http://hooks.example:{server.port}/redirect", timeout=2)
    assert len(server.received) == 2
    assert {host for host, _ in resolve.calls} == {"hooks.example"}
    assert {address[0] for address in connects} == {"127.0.0.1"}


def test_a_name_that_does_not_resolve_is_a_connection_error(
    connects: list[tuple[Any, ...]],
) -> None:
    with (
        guarded_session(LOOPBACK_ONLY, resolve=RecordingResolver()) as http,
        pytest.raises(requests.exceptions.ConnectionError, match="Failed to resolve"),
    ):
        http.get("http://nowhere.example/x", timeout=2)
    assert connects == []


def test_proxies_from_the_environment_are_ignored_and_explicit_ones_refused(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with guarded_session(LOOPBACK_ONLY, resolve=RecordingResolver()) as http:
        assert http.trust_env is False
        assert http.get(f"http://hooks.example:{server.port}/x", timeout=2).status_code == 200
        with pytest.raises(requests.exceptions.InvalidProxyURL, match="never sent through"):
            http.get(
                f"http://hooks.example:{server.port}/x",
                timeout=2,
                proxies={"http": f"http://127.0.0.1:{server.port}"},
            )
    assert len(server.received) == 1


def test_https_verifies_the_certificate_against_the_url_host_name(
    tls_server: Server, certificate: tuple[Path, Path], connects: list[tuple[Any, ...]]
) -> None:
    cert, _ = certificate
    table = dict(NAMES, **{"other.example": ["127.0.0.1"]})
    with guarded_session(LOOPBACK_ONLY, resolve=RecordingResolver(table)) as http:
        response = http.get(
            f"https://hooks.example:{tls_server.port}/x", timeout=2, verify=str(cert)
        )
        assert response.status_code == 200
        assert tls_server.received == [("/x", f"hooks.example:{tls_server.port}")]
        # The certificate names hooks.example only: the connect target (127.0.0.1) is not
        # what is checked, the URL's host is.
        with pytest.raises(requests.exceptions.SSLError):
            http.get(f"https://other.example:{tls_server.port}/x", timeout=2, verify=str(cert))
    assert tls_server.server_names[:2] == ["hooks.example", "other.example"]
    assert {address[0] for address in connects} == {"127.0.0.1"}
