"""Sandbox ports: a restarted sandbox is not refused for connections left in TIME_WAIT, and test
sandboxes side by side take distinct ports that no client connection can take first."""

from __future__ import annotations

import socket

from dr_sandbox.layout import TEST_PORT_BASE, TEST_PORT_BLOCK, PortBlock, SandboxLayout, port_is_free

HOST = "127.0.0.1"


def _listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every sandbox server binds
    s.bind((HOST, port))
    s.listen()
    return s


def test_a_port_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    port = PortBlock("gw19").take(HOST)
    server = _listener(port)
    assert not port_is_free(HOST, port)
    client = socket.create_connection((HOST, port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    # a connection still holds the port (TIME_WAIT), yet nothing listens: a restart must go ahead
    plain = socket.socket()
    try:
        plain.bind((HOST, port))
        raise AssertionError("expected the port to be held by a TIME_WAIT connection")
    except OSError:
        pass
    finally:
        plain.close()
    assert port_is_free(HOST, port)
    _listener(port).close()  # and a server really binds it


def test_a_bound_udp_port_is_not_free_for_udp() -> None:
    port = PortBlock("gw18").take(HOST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, port))
        assert not port_is_free(HOST, port, socket.SOCK_DGRAM)
    assert port_is_free(HOST, port, socket.SOCK_DGRAM)


def test_workers_take_distinct_ports_below_the_ephemeral_range_and_skip_a_taken_one() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    a, b = PortBlock("gw0"), PortBlock("gw1")
    ports_a = {a.take(HOST) for _ in range(12)}
    ports_b = {b.take(HOST) for _ in range(12)}
    assert len(ports_a) == 12 and len(ports_b) == 12 and not ports_a & ports_b
    assert all(TEST_PORT_BASE <= p < TEST_PORT_BASE + TEST_PORT_BLOCK for p in ports_a)
    assert all(TEST_PORT_BASE + TEST_PORT_BLOCK <= p < TEST_PORT_BASE + 2 * TEST_PORT_BLOCK for p in ports_b)
    assert max(ports_a | ports_b) < ephemeral_low

    block = PortBlock("gw17")
    expected = block._next  # the port it would hand out next
    with socket.socket() as holder:
        holder.bind((HOST, expected))
        assert block.take(HOST) != expected


def test_a_test_layout_gives_every_component_its_own_port(tmp_path) -> None:
    layout = SandboxLayout.for_tests(tmp_path, ["us-east-1", "us-west-2", "eu-west-1"])
    ports = [
        layout.aws_port,
        layout.dns_port,
        layout.dns_status_port,
        layout.k8s_port,
        layout.airflow_port,
        layout.sink_port,
        layout.neo4j_port,
        layout.app_port,
        layout.drill_app_port,
    ]
    assert len(set(ports)) == len(ports)
    assert set(layout.region_hosts.values()) == {"127.9.1.1", "127.9.2.1", "127.9.3.1"}
