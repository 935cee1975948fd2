"""Evidence behind wildix_ast.services.agi's choice of its own FastAGI server (see its docstring):
the defects of panoramisk 1.4's and pyst2 0.5.1's FastAGI on this Python, reproduced.

If one of these starts failing, a release fixed the defect: re-read the decision."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

PANORAMISK_SPIN = textwrap.dedent("""
    import asyncio, time
    from panoramisk.fast_agi import Application

    async def main():
        app = Application()
        async def route(request):
            pass
        app.add_route('ok', route)
        server = await asyncio.start_server(app.handler, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'agi_network: yes\\nagi_network_script: ok\\n')  # no blank line
        await writer.drain()
        writer.close()
        print('peer closed mid-handshake', flush=True)
        started = time.monotonic()
        await asyncio.sleep(0.2)
        print(f'event loop alive after {time.monotonic() - started:.2f} s', flush=True)

    asyncio.run(main())
""")


@pytest.mark.slow
def test_panoramisk_fastagi_spins_when_the_peer_closes_mid_handshake() -> None:
    """`while b'\\n\\n' not in buffer: buffer += await reader.read(100)`: at EOF read()
    returns b'' without yielding, so the loop never gives the event loop back: a 0.2 s
    sleep elsewhere never ends, and the process burns a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        subprocess.run([sys.executable, "-c", PANORAMISK_SPIN], capture_output=True,
                       timeout=3.0, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = (caught.value.stdout or b"").decode()
    assert "peer closed mid-handshake" in output
    assert "event loop alive" not in output
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu > 0.5, f"expected a busy loop, the child used only {cpu:.2f} s of CPU"


def test_panoramisk_add_route_with_a_plain_function_fails_on_python_311() -> None:
    from panoramisk.fast_agi import Application

    async def make() -> None:
        app = Application()
        app.add_route("x", lambda request: None)

    import asyncio
    with pytest.raises(AttributeError, match="coroutine"):
        asyncio.run(make())


def test_pyst2_fastagi_does_not_import() -> None:
    done = subprocess.run([sys.executable, "-c", "import asterisk.fastagi"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "No module named 'SocketServer'" in done.stderr
