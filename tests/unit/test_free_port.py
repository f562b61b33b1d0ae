"""The ports tests give their servers: never ones the kernel could hand to another process meanwhile."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.processes import free_port, free_ports, ports_for_tests


def test_a_test_port_lies_outside_the_kernels_ephemeral_range_and_is_bindable() -> None:
    low, high = (int(bound) for bound in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for port in free_ports(50):
        assert not low <= port <= high, f"{port} is in the ephemeral range {low}-{high}"
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()


def test_no_port_is_handed_out_twice_in_a_run() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_port_that_something_listens_on_is_never_chosen() -> None:
    # 500 listeners on the lowest bindable ports of the range test ports come from: 500 choices
    # would land on about ten of them if the choice did not check.
    listeners: list[socket.socket] = []
    try:
        for port in ports_for_tests():
            if len(listeners) == 500:
                break
            listener = socket.socket()
            try:
                listener.bind(("127.0.0.1", port))
            except OSError:
                listener.close()
                continue
            listener.listen()
            listeners.append(listener)
        taken = {listener.getsockname()[1] for listener in listeners}
        assert taken.isdisjoint(free_ports(500))
    finally:
        for listener in listeners:
            listener.close()
