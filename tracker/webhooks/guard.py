"""The SSRF guard: webhooks reach only addresses the operator allows.

A webhook URL is chosen by a user, and the tracker POSTs to it from inside the deployment, so a
URL aimed at an internal address (the database, a cloud metadata service at 169.254.169.254, an
admin port on loopback) would turn the tracker into a proxy for the inside network. Two checks
stand in the way:

* `vet_url` (and `check_url`), when an endpoint is added: the URL must be a plain http(s) URL
  without credentials, and its host (an IP literal, or every address its name resolves to) must
  be allowed. A name that does not resolve right now (a DNS blip at the receiver's side) is
  accepted with a warning: each send resolves it again. This gives the user a clear refusal
  early; it is not the protection, because DNS answers change. The edges call `vet_url` before
  they open a database transaction, so no lookup ever runs inside one.
* `guarded_http.guarded_session`, when a webhook is sent: a `requests.Session` whose every TCP
  connection is made to an address judged at connect time, after resolution, so a name that
  later resolves to an internal address (DNS rebinding) is still refused and nothing is sent.
  Callers must pass ``allow_redirects=False``: a redirect is an answer, never followed.

`AddressPolicy` decides: loopback, private, link-local, carrier-grade NAT, multicast, reserved,
unspecified, broadcast and other not-globally-routable addresses are refused unless they lie
inside the operator's ``allowed_networks`` (TRACKER_WEBHOOK_ALLOWED_NETWORKS). IPv6 addresses that
embed an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are
judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

import requests
from urllib3.util import parse_url
from urllib3.util.connection import allowed_gai_family

if TYPE_CHECKING:
    from tracker.settings import Settings

__all__ = [
    "MAX_URL_LENGTH",
    "AddressPolicy",
    "RefusedURL",
    "Resolver",
    "VettedURL",
    "check_url",
    "system_resolver",
    "vet_url",
]

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
SETTING = "TRACKER_WEBHOOK_ALLOWED_NETWORKS"
RESOLVE_TIMEOUT_S = 5.0  # at add time; a name whose DNS says nothing by then is not resolving

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], list[str]]
"""Resolves ``(host, port)`` to IP address strings; raises `OSError` when the name is unknown."""

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix, IPv4 in low 32 bits
# Not globally routable, yet `is_global` in Python 3.11: RFC 8215 local-use NAT64 (translates to
# whatever IPv4 the local gateway sees) and deprecated site-local addresses (RFC 3879).
_INTERNAL_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("fec0::/10"))
# Hosts that `getaddrinfo` reads as IPv4 numbers without DNS (inet_aton forms: "127.1", "0x7f.1").
_INET_ATON_CHARS = re.compile(r"[0-9a-fA-FxX.]+")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")  # control characters and whitespace


class RefusedURL(ValueError):
    """A webhook URL that is invalid or aimed at a refused address; the message is for the user."""


@dataclass(frozen=True)
class _Refusal:
    """Why one address is refused: its category, and the IPv4 address it embeds, if any."""

    address: IPAddress
    category: str
    embedded: ipaddress.IPv4Address | None = None

    def sentence(self) -> str:
        """E.g. ``169.254.169.254 is link-local``."""
        if self.embedded is not None:
            return f"{self.address} embeds {self.embedded}, which is {self.category}"
        return f"{self.address} is {self.category}"

    def noun_phrase(self) -> str:
        """E.g. ``10.0.0.5, a private address``."""
        if self.category == "not globally routable":
            what = "an address that is not globally routable"
        else:
            article = "an" if self.category[0] in "aeiou" else "a"
            what = f"{article} {self.category} address"
        if self.embedded is not None:
            return f"{self.address}, which embeds {self.embedded}, {what}"
        return f"{self.address}, {what}"


def _parse_address(address: str | IPAddress) -> IPAddress | None:
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    try:
        return ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to the IPv4 internet, if it is such a form."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _category(address: IPAddress) -> str | None:
    """The reason to refuse an address that is not inside an allowed network; None if public."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address == _BROADCAST:
        return "broadcast"
    if address.is_reserved:
        return "reserved"
    if address in _CGNAT:
        return "carrier-grade NAT"
    if address.is_private or (
        isinstance(address, ipaddress.IPv6Address)
        and (address.is_site_local or any(address in net for net in _INTERNAL_V6))
    ):
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses webhooks may reach: public ones, plus any inside ``allowed_networks``."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        """The policy TRACKER_WEBHOOK_ALLOWED_NETWORKS describes."""
        return cls(tuple(settings.webhook_allowed_networks))

    @classmethod
    def from_setting(cls, value: str) -> AddressPolicy:
        """Parse comma-separated networks or addresses ("127.0.0.0/8, ::1"); "" allows none.

        Raises ValueError naming the bad entry.
        """
        from tracker.settings import parse_networks

        return cls(parse_networks(value))

    def _judge(self, address: str | IPAddress) -> _Refusal | str | None:
        """None if allowed; a `_Refusal`; or a string for something that is not an IP address."""
        parsed = _parse_address(address)
        if parsed is None:
            return f"{address!r} is not an IP address"
        embedded = _embedded_ipv4(parsed) if isinstance(parsed, ipaddress.IPv6Address) else None
        for candidate in (parsed, embedded):
            if candidate is not None and any(
                candidate.version == net.version and candidate in net
                for net in self.allowed_networks
            ):
                return None
        judged = parsed if embedded is None else embedded
        category = _category(judged)
        if category is None:
            return None
        return _Refusal(parsed, category, embedded)

    def is_allowed(self, address: str | IPAddress) -> bool:
        """True if a webhook may connect to this address (an unparsable string is refused)."""
        return self._judge(address) is None

    def refusal_reason(self, address: str | IPAddress) -> str | None:
        """None if allowed, else why not, e.g. ``169.254.169.254 is link-local``."""
        judged = self._judge(address)
        return judged.sentence() if isinstance(judged, _Refusal) else judged


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``socket.getaddrinfo`` gives for TCP, deduplicated, in their order.

    The address families are those urllib3 would use (IPv6 only if this machine has it).
    Raises `socket.gaierror` (an `OSError`) when the name does not resolve; a name under
    `.invalid` fails at once, with no DNS query (RFC 6761: such names never resolve).
    """
    if _is_invalid_name(host):
        raise socket.gaierror(
            socket.EAI_NONAME, "Name or service not known (.invalid never resolves, RFC 6761)"
        )
    addresses: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(
        host, port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3] and "%" not in address:
            address = f"{address}%{sockaddr[3]}"  # keep the scope of a link-local address
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_invalid_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "invalid" or name.endswith(".invalid")


def _ip_literal(host: str) -> IPAddress | None:
    """The address a host names without DNS: an IP literal, or a numeric form inet_aton reads."""
    parsed = _parse_address(host)
    if parsed is not None:
        return parsed
    if _INET_ATON_CHARS.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def _refused(url: str, what: str) -> RefusedURL:
    return RefusedURL(f"{_shown(url)} {what}; refused (allow it with {SETTING})")


@dataclass(frozen=True, slots=True)
class VettedURL:
    """A webhook URL that passed `vet_url`, and what the user should hear about it, if anything.

    The use cases that store webhook URLs take one instead of a string so that the DNS lookup
    has already happened, before their transaction.
    """

    url: str
    warning: str | None = None  # e.g. the host does not resolve right now


def check_url(
    url: str,
    policy: AddressPolicy,
    *,
    resolve: Resolver = system_resolver,
    resolve_host: bool = True,
) -> str:
    """Return the webhook URL, stripped, or raise `RefusedURL`; `vet_url` without the warning."""
    return vet_url(url, policy, resolve=resolve if resolve_host else None).url


def vet_url(
    url: str,
    policy: AddressPolicy,
    *,
    resolve: Resolver | None = system_resolver,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> VettedURL:
    """The webhook URL, stripped, with a warning when its host does not resolve right now; or
    `RefusedURL` saying what is wrong with it.

    Refused: anything but an http(s) URL with a host; longer than `MAX_URL_LENGTH`; with a user
    name or password (they would be logged); with a port outside 1..65535; with an IP-literal
    host the policy refuses; with a name (unless ``resolve`` is None) that resolves to ANY
    refused address. A name that does not resolve, or whose DNS gives no answer within
    `timeout_s`, is accepted with a warning. This is the early, user-facing check;
    `guarded_session` is what protects each send.
    """
    if not isinstance(url, str):
        raise RefusedURL(f"a webhook URL must be a string, not {type(url).__name__}")
    url = url.strip()
    if not url:
        raise RefusedURL("a webhook URL must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise RefusedURL(
            f"the webhook URL is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed"
        )
    shown = _shown(url)
    if _UNSAFE_CHARS.search(url):
        raise RefusedURL(f"{shown!r} contains spaces or control characters; encode them")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise RefusedURL(f"{shown} is not a valid URL: {error}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise RefusedURL(f"{shown} is not an absolute URL; it must start with http:// or https://")
    if scheme not in ALLOWED_SCHEMES:
        raise RefusedURL(f"{shown} uses {scheme}:, but a webhook URL must use http:// or https://")
    if not url[len(scheme) + 1 :].startswith("//"):
        raise RefusedURL(f"{shown} has no host; it must start with {scheme}://")
    if "@" in parts.netloc:
        raise RefusedURL(
            f"{shown} contains a user name or password (user:pass@host); webhook URLs must "
            "not carry credentials, which end up in logs: authenticate with the signature"
        )
    if not parts.hostname:
        raise RefusedURL(f"{shown} has no host")
    try:
        port = parts.port
    except ValueError:
        raise RefusedURL(f"{shown} has an invalid port; it must be a number in 1..65535") from None
    if port == 0:
        raise RefusedURL(f"{shown} has port 0; it must be a number in 1..65535")
    host = _host_requests_uses(url, shown, parts.hostname)
    literal = _ip_literal(host)
    if literal is not None:
        judged = policy._judge(literal)
        if isinstance(judged, _Refusal):
            raise _refused(url, f"points to {judged.noun_phrase()}")
        return VettedURL(url)
    if resolve is None:
        return VettedURL(url)
    reason = "it resolves to no address"
    try:
        addresses = _resolve_within(
            resolve, host, port or (443 if scheme == "https" else 80), timeout_s
        )
    except (OSError, UnicodeError) as error:
        addresses = []
        reason = " ".join(str(error).split())[:200] or type(error).__name__
    if not addresses:
        return VettedURL(
            url,
            f"the host {host} does not resolve right now ({reason}); the webhook is kept and "
            "every send resolves it again: until it resolves, its attempts fail and are "
            "recorded, and retried on the usual schedule",
        )
    for address in addresses:
        judged = policy._judge(address)
        if judged is not None:
            if isinstance(judged, _Refusal):
                phrase = judged.noun_phrase()
            else:
                phrase = f"{address!r}, which is not an IP address"
            raise _refused(url, f"points to {host}, which resolves to {phrase}")
    return VettedURL(url)


def _resolve_within(resolve: Resolver, host: str, port: int, timeout_s: float) -> list[str]:
    """`resolve(host, port)`, or TimeoutError when it has not answered within `timeout_s`
    (`getaddrinfo` itself has no timeout, and a DNS server that says nothing can hold it for
    tens of seconds)."""
    outcome: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(resolve(host, port))
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    thread = threading.Thread(target=run, name="webhook-url-resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise TimeoutError(f"no DNS answer within {timeout_s:g} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _host_requests_uses(url: str, shown: str, hostname: str) -> str:
    """The host requests will connect to (IDNA-encoded), checked against the stdlib's parse.

    Two URL parsers that disagree about the host are how such checks are bypassed, so a URL
    they read differently is refused.
    """
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        host = parse_url(prepared.url or "").host or ""
    except (requests.RequestException, ValueError, UnicodeError) as error:
        raise RefusedURL(f"{shown} is not a valid URL: {error}") from None
    host = host.strip("[]").lower()
    if hostname.isascii() and host != hostname.lower():
        raise RefusedURL(f"{shown} is ambiguous: its host reads as {hostname} or as {host}")
    if not host:
        raise RefusedURL(f"{shown} has no host")
    return host
