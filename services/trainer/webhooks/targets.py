"""Which URLs webhooks may be sent to: http(s) only, and, where configured, only allowed hosts.

A webhook makes the trainer send requests where a user says, from inside the deployment:
without a limit, an endpoint on ``http://10.0.0.5/`` or a cloud metadata address would let
an API user reach internal services (server-side request forgery). Deployments that
expose Tailor to untrusted users set ``trainer_webhook_allowed_targets`` (host names and
CIDRs); the default allows any target so that ``make up`` and the tests can use loopback.
An allowed CIDR is checked against the URL's literal address at creation and against the
addresses its host resolves to before every attempt (a name may later resolve elsewhere).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from services.common.errors import InvalidArgument

MAX_URL_LENGTH = 2048


def check_url(url: str, allowed: list[str], *, param: str = "url", targets: str = "webhook targets") -> str:
    """``url`` if it may be sent to; otherwise InvalidArgument naming ``param`` and what is wrong.

    Also the rule for an MLflow integration's tracking URI (services/trainer/job_requests.py),
    whose requests the worker sends from inside the deployment just the same.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"{param} is longer than {MAX_URL_LENGTH} characters.", param=param)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        raise InvalidArgument(f"{param} is not a valid URL: {error}.", param=param) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{param} must be an http:// or https:// URL with a host.", param=param)
    if parts.username or parts.password:
        raise InvalidArgument(f"{param} must not hold credentials.", param=param)
    if allowed and not _host_allowed(parts.hostname, [], allowed):
        literal = _address(parts.hostname)
        if literal is None or not _host_allowed(parts.hostname, [literal], allowed):
            raise InvalidArgument(
                f"{param}'s host {parts.hostname} is not among this deployment's allowed {targets}.",
                param=param,
            )
    return url


async def target_allowed(url: str, allowed: list[str]) -> bool:
    """Whether ``url`` may be sent to now: its host is allowed by name, or all its addresses by CIDR."""
    if not allowed:
        return True
    host = urlsplit(url).hostname or ""
    if _host_allowed(host, [], allowed):
        return True
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    return bool(addresses) and all(_host_allowed("", [address], allowed) for address in addresses)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_allowed(
    host: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address], allowed: list[str]
) -> bool:
    for entry in allowed:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if host and host.lower() == entry.lower():
                return True
            continue
        if addresses and all(address in network for address in addresses):
            return True
    return False
