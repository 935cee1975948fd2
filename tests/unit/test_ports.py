"""The project's one port allocator (wildix_ast/lab/allocator.py): slots locked across processes,
ports handed out in turn inside them and checked by binding."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from wildix_ast.lab.allocator import (
    FIRST_SLOT_PORT,
    LAST_PORT,
    SLOT_SIZE,
    PortPool,
    free_port,
    lock_slot,
    port_free,
)


def _slot(port: int) -> int:
    return (port - FIRST_SLOT_PORT) // SLOT_SIZE


def test_free_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == 40
    assert all(FIRST_SLOT_PORT <= p <= LAST_PORT and port_free(p) for p in ports)
    media = free_port(span=4, even=True)
    assert media % 2 == 0 and all(port_free(p) for p in range(media, media + 4))
    with pytest.raises(ValueError):
        free_port(span=SLOT_SIZE + 1)


def test_pool_skips_a_port_someone_else_holds() -> None:
    pool = PortPool()
    try:
        first = pool.take()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind(("127.0.0.1", first + 1))
            second = pool.take()
        assert second > first + 1 and _slot(second) == _slot(first)
    finally:
        pool.close()


def test_pool_slot_is_locked_against_other_processes() -> None:
    pool = PortPool()
    port = pool.take()
    slot = _slot(port)
    try:
        assert lock_slot(slot) is None  # another run (or a lab) cannot take it
        child = subprocess.run(
            [sys.executable, "-c",
             "from wildix_ast.lab.allocator import free_port; print(free_port())"],
            capture_output=True, text=True, check=True, timeout=60,
        )
        assert _slot(int(child.stdout)) != slot
    finally:
        pool.close()
    fd = lock_slot(slot)
    assert fd is not None
    os.close(fd)
