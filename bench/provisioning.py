"""Provisioning server throughput and latency: phones booting at once.

    .venv/bin/python bench/provisioning.py [--devices 100] [--requests 2000] [--rsa] [--http]
        [--workers N] [--no-single] [--no-floor]

`wildix-ast provisioning serve` runs as its own process (as a person starts it) on a store
made from examples/site.yaml with `--devices` Yealink phones, each assigned to a user. Each
request is what a booting phone does: a new TCP connection, a full TLS handshake (the
server's ECDSA P-256 certificate, as the Ansible role makes it; `--rsa`: RSA-2048, the
lab's kind; `--http`: none), `GET /p/<its credential>/<its mac>.cfg`, the file read whole,
close. A phone that boots has no TLS session to resume (its cache is in RAM).

Printed, with the server's own CPU per request (its /proc utime + stime, its worker
processes included):
  1 phone at a time (the baseline), `--devices` phones at once, the same with TLS sessions
  resumed (a phone re-checking without a reboot, if its firmware resumes), and the same
  number at once asking a vendor's common file (`y000000000044.cfg`: the server's HTTP and
  TLS cost without a store read or a render); requests/s, p50/p99/max latency, errors, and
  the ratios. Then, when Apache's `ab` is installed (Debian apache2-utils), the same two
  boot cases from ab, a compiled client (a new connection and a full handshake per request,
  one device's link), so the Python client's own CPU weighs less. Then, in the same run, the
two 100-at-once cases against a second server with `--workers 1` (one process: what the
worker processes gain), and against the floor: OpenSSL's own C server (`openssl s_server
-WWW`, one process, serving a file of the same size with the same certificate; a baseline
inside the bench only, never part of the product). Then the scanner case:
  `--scan` (100,000) requests of a banned source, each a new connection the server closes
  before reading: refusals per second.

The clients run on the same machine: with 2 cores shared, their own CPU is part of what is
measured (the load average is printed at start and end; say so when quoting figures).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wildix_ast.model.devices import Device, Vendor
from wildix_ast.model.provisioning import ProvisioningSettings
from wildix_ast.model.settings_file import load_site
from wildix_ast.services.ami.ban_file import update_bans
from wildix_ast.services.ami.security import Ban
from wildix_ast.store import open_store
from wildix_ast.store.devices import add_device
from wildix_ast.store.vault import with_secrets

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "site.yaml"
SCANNER = "127.0.0.66"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _certificate(folder: Path, ecdsa: bool) -> tuple[Path, Path]:
    cert, key = folder / "server.crt", folder / "server.key"
    kind = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ecdsa else \
        ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *kind, "-nodes", "-days", "2",
                    "-subj", "/CN=bench", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _fetch(port: int, context: ssl.SSLContext | None, path: str,
           source: str = "127.0.0.1",
           sessions: dict[str, ssl.SSLSession] | None = None) -> tuple[float, int]:
    """(seconds, HTTP status) of one phone's fetch on a new connection; with `sessions`,
    the TLS session of the phone's last fetch is resumed (and the new one kept)."""
    started = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                    source_address=(source, 0))
    try:
        stream: socket.socket = sock
        if context is not None:
            stream = context.wrap_socket(
                sock, server_hostname="127.0.0.1",
                session=sessions.get(path) if sessions is not None else None)
        stream.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                       f"User-Agent: Yealink SIP-T54W 96.86.0.100\r\n\r\n".encode())
        data = b""
        while chunk := stream.recv(65536):
            data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
        if sessions is not None and isinstance(stream, ssl.SSLSocket) \
                and stream.session is not None:
            sessions[path] = stream.session
    finally:
        sock.close()
    return time.perf_counter() - started, status


def _client_cpu() -> float:
    """The clients' CPU so far: this process (the Python client's threads) and its ended
    children (each ab run)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    """`wildix-ast provisioning serve` as its own process, once its port answers."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "NO_COLOR": "1"})
    for _ in range(150):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.2)
    return server


def _fetch_body(port: int, context: ssl.SSLContext, path: str) -> bytes:
    """One phone's file, its body only (the floor serves a file of its size)."""
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                               server_hostname="127.0.0.1")
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU so far, its threads and its living child processes
    (the server's workers) included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                total += _cpu_seconds(int(child))
    return total


def _floor_server(work: Path, cert: Path, key: Path, body: bytes) -> tuple[
        subprocess.Popen[bytes], int, str]:
    """The floor, for comparison only (never part of the product): OpenSSL's own C server
    (`openssl s_server -WWW`, one process, one connection at a time) serving a static file of
    the same size as a phone's, with the same certificate: what a full TLS handshake and a
    file cost on this machine without Python."""
    folder = work / "floor"
    folder.mkdir()
    (folder / "phone.cfg").write_bytes(body)
    errors = work / "floor.err"  # a file: a pipe nobody reads would fill
    port = _free_port()
    process = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept",
                                f"127.0.0.1:{port}",
                                "-naccept", "1000000", "-cert", str(cert), "-key", str(key),
                                "-WWW"], cwd=folder, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errors.open("wb"))
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"openssl s_server: {errors.read_text()[-300:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.1)
    return process, port, "/phone.cfg"


def _ab(url: str, concurrency: int, total: int) -> dict[str, float] | None:
    """Apache's ab (compiled, one process): a new connection and TLS handshake per request.
    None when ab is not installed."""
    ab = shutil.which("ab")
    if ab is None:
        return None
    done = subprocess.run([ab, "-q", "-n", str(total), "-c", str(concurrency), "-s", "30",
                           "-H", "User-Agent: Yealink SIP-T54W 96.86.0.100", url],
                          capture_output=True, text=True, timeout=600, check=False)
    text = done.stdout
    if os.environ.get("BENCH_DEBUG"):
        print(done.returncode, text, done.stderr[-2000:])

    def number(pattern: str) -> float:
        found = re.search(pattern, text, re.M)
        return float(found.group(1)) if found else float("nan")

    failed = number(r"^Failed requests:\s+(\d+)") + \
        (number(r"^Non-2xx responses:\s+(\d+)") if "Non-2xx" in text else 0)
    return {"rate": number(r"^Requests per second:\s+([\d.]+)"),
            "p50": number(r"^\s+50%\s+(\d+)"), "p99": number(r"^\s+99%\s+(\d+)"),
            "max": number(r"^\s+100%\s+(\d+)"), "errors": failed if done.returncode == 0
            else float(total), "n": number(r"^Complete requests:\s+(\d+)") - failed}


def _run(concurrency: int, total: int, one: Callable[[int], tuple[float, int]],
         expect: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def task(index: int) -> None:
        nonlocal errors
        try:
            seconds, status = one(index)
        except OSError:
            seconds, status = 0.0, 0
        with lock:
            if status == expect:
                latencies.append(seconds)
            else:
                errors += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(task, range(total)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    return {"rate": len(latencies) / wall, "p50": statistics.median(ordered) * 1000,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "max": ordered[-1] * 1000, "errors": errors, "n": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--scan", type=int, default=100_000)
    parser.add_argument("--http", action="store_true", help="plain HTTP (no TLS)")
    parser.add_argument("--rsa", action="store_true",
                        help="an RSA-2048 certificate instead of ECDSA P-256")
    parser.add_argument("--workers", type=int, default=0,
                        help="the server's worker processes (0: its default, one per CPU)")
    parser.add_argument("--no-single", action="store_true",
                        help="skip the same cases against --workers 1")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the openssl s_server floor")
    args = parser.parse_args()
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        port = _free_port()
        db = str(work / "store.sqlite3")
        site = load_site(EXAMPLE)
        site = site.model_copy(update={"provisioning": ProvisioningSettings(
            address="127.0.0.1", port=port, allow_http=args.http, voice_vlan=20,
            ntp_server="127.0.0.1")})
        users = [u.extension for u in site.users if u.type.has_phone]
        links: list[str] = []
        with open_store(db) as store:
            store.import_site(with_secrets(site, store))
            for n in range(args.devices):
                mac = f"001565{n:06x}"
                credential = add_device(store, Device(mac=mac, vendor=Vendor.YEALINK,
                                                      extension=users[n % len(users)]))
                links.append(f"/p/{credential}/{mac}.cfg")
        command = [sys.executable, "-m", "wildix_ast", "provisioning", "serve", "--host",
                   "127.0.0.1", "--state-dir", str(work / "runtime"), "--db", db,
                   "--workers", str(args.workers)]
        context = None
        if not args.http:
            cert, key = _certificate(work, not args.rsa)
            command += ["--certificate", str(cert), "--private-key", str(key)]
            context = ssl.create_default_context(cafile=str(cert))
        server = _start(command, port)
        try:
            load = os.getloadavg()[0]

            # each phone from its own address, as on a LAN (the server caps connections
            # per source)
            def device(index: int) -> tuple[float, int]:
                return _fetch(port, context, links[index % len(links)],
                              f"127.0.1.{index % len(links) % 250 + 1}")

            def common(index: int) -> tuple[float, int]:
                return _fetch(port, context, f"{links[index % len(links)].rsplit('/', 1)[0]}"
                                             "/y000000000044.cfg",
                              f"127.0.1.{index % len(links) % 250 + 1}")

            sessions: dict[str, ssl.SSLSession] = {}

            def resumed(index: int) -> tuple[float, int]:
                return _fetch(port, context, links[index % len(links)],
                              f"127.0.1.{index % len(links) % 250 + 1}", sessions)

            _run(4, 50, device, 200)  # warm-up: caches, the site's facts
            cases: list[tuple[str, dict[str, float]]] = []

            def measure(name: str, run: Callable[[], dict[str, float] | None],
                        pid: int = server.pid) -> None:
                """One case; `pid`: the server whose CPU is counted (its workers too)."""
                cpu, client = _cpu_seconds(pid), _client_cpu()
                result = run()
                if result is None:
                    return
                served = max(result["n"] + result["errors"], 1)
                result["cpu"] = (_cpu_seconds(pid) - cpu) * 1000 / served
                result["client"] = (_client_cpu() - client) * 1000 / served
                cases.append((name, result))

            measure("1 phone at a time (baseline)",
                    lambda: _run(1, max(200, args.requests // 10), device, 200))
            measure(f"{args.devices} phones at once", lambda: _run(args.devices, args.requests,
                                                                   device, 200))
            if context is not None:
                _run(args.devices, len(links), resumed, 200)  # each phone's first session
                measure(f"{args.devices} at once, TLS session resumed",
                        lambda: _run(args.devices, args.requests, resumed, 200))
            measure(f"{args.devices} at once, common file (no store, no render)",
                    lambda: _run(args.devices, args.requests, common, 404))
            url = f"{'http' if args.http else 'https'}://127.0.0.1:{port}{links[0]}"
            measure("ab (compiled client), 1 at a time",
                    lambda: _ab(url, 1, max(200, args.requests // 10)))
            measure(f"ab (compiled client), {args.devices} at once",
                    lambda: _ab(url, args.devices, args.requests))
            if args.workers != 1 and not args.no_single:
                # the same cases against one process (`--workers 1`), same run, same store
                single_port = _free_port()
                single_command = [*command, "--workers", "1", "--port", str(single_port)]
                single = _start(single_command, single_port)
                try:
                    def single_fetch(index: int) -> tuple[float, int]:
                        return _fetch(single_port, context, links[index % len(links)],
                                      f"127.0.1.{index % len(links) % 250 + 1}")

                    _run(4, 50, single_fetch, 200)
                    measure(f"{args.devices} phones at once, --workers 1",
                            lambda: _run(args.devices, args.requests, single_fetch, 200),
                            single.pid)
                    single_url = f"{'http' if args.http else 'https'}://127.0.0.1:" \
                                 f"{single_port}{links[0]}"
                    measure(f"ab (compiled client), {args.devices} at once, --workers 1",
                            lambda: _ab(single_url, args.devices, args.requests), single.pid)
                finally:
                    single.send_signal(signal.SIGTERM)
                    single.wait(20)
            if context is not None and not args.no_floor:
                # the floor: a C TLS server (one process) serving a file of the same size
                sample = _fetch_body(port, context, links[0])
                floor, floor_port, floor_path = _floor_server(work, cert, key, sample)
                try:
                    def floor_fetch(index: int) -> tuple[float, int]:
                        return _fetch(floor_port, context, floor_path,
                                      f"127.0.1.{index % len(links) % 250 + 1}")

                    _run(4, 50, floor_fetch, 200)

                    measure("floor: openssl s_server -WWW, 1 at a time",
                            lambda: _run(1, max(200, args.requests // 10), floor_fetch, 200),
                            floor.pid)
                    measure(f"floor: openssl s_server -WWW, {args.devices} at once",
                            lambda: _run(args.devices, args.requests, floor_fetch, 200),
                            floor.pid)
                    floor_url = f"https://127.0.0.1:{floor_port}{floor_path}"
                    measure(f"floor: s_server, ab {args.devices} at once",
                            lambda: _ab(floor_url, args.devices, args.requests), floor.pid)
                finally:
                    floor.terminate()
                    floor.wait(10)
            end_load = os.getloadavg()[0]
            kind = "HTTP" if args.http else f"HTTPS ({'RSA-2048' if args.rsa else 'ECDSA P-256'})"
            table = Table(title=f"provisioning: {kind}, new connection per request, load "
                                f"average {load:.1f} at start, {end_load:.1f} at end, on "
                                f"{os.cpu_count()} cores")
            for column in ("case", "requests", "req/s", "p50 ms", "p99 ms", "max ms",
                           "errors", "server CPU ms/req", "client CPU ms/req"):
                table.add_column(column)
            for name, result in cases:
                table.add_row(name, str(int(result["n"])), f"{result['rate']:.0f}",
                              f"{result['p50']:.1f}", f"{result['p99']:.1f}",
                              f"{result['max']:.1f}", str(int(result["errors"])),
                              f"{result['cpu']:.2f}", f"{result['client']:.2f}")
            console.print(table)
            results = dict(cases)
            one, many = results["1 phone at a time (baseline)"], \
                results[f"{args.devices} phones at once"]
            bare = results[f"{args.devices} at once, common file (no store, no render)"]
            console.print(f"{args.devices} at once vs 1 at a time: "
                          f"{many['rate'] / one['rate']:.2f}x "
                          f"the rate, p99 {many['p99'] / max(one['p99'], 1e-9):.1f}x; "
                          f"files vs common file: {many['rate'] / bare['rate']:.2f}x the rate")
            for name in (f"{args.devices} phones at once",
                         f"ab (compiled client), {args.devices} at once"):
                if name in results:
                    result = results[name]
                    met = result["p99"] < 50 and not result["errors"]
                    console.print(f"goal p99 < 50 ms at {args.devices} phones ({name}): "
                                  f"{'met' if met else 'NOT met'}")
            for ours, floor_name in (
                    (f"{args.devices} phones at once",
                     f"floor: openssl s_server -WWW, {args.devices} at once"),
                    (f"ab (compiled client), {args.devices} at once",
                     f"floor: s_server, ab {args.devices} at once")):
                if ours in results and floor_name in results:
                    mine, bottom = results[ours], results[floor_name]
                    console.print(f"{ours} vs the C floor ({floor_name}): "
                                  f"{mine['rate'] / max(bottom['rate'], 1e-9):.2f}x the rate, "
                                  f"p99 {mine['p99'] / max(bottom['p99'], 1e-9):.2f}x")
            for name in (f"{args.devices} phones at once",
                         f"ab (compiled client), {args.devices} at once"):
                one_process = results.get(f"{name}, --workers 1")
                if name in results and one_process:
                    console.print(f"{name}: workers vs --workers 1: "
                                  f"{results[name]['rate'] / one_process['rate']:.2f}x the "
                                  f"rate, p99 {results[name]['p99'] / one_process['p99']:.2f}x")
            cores = os.cpu_count() or 1
            for name, result in cases:
                if "at once" in name:
                    # 100 requests in flight, each needing server + client CPU on the same
                    # cores: the last of a burst waits for all the others' CPU
                    bound = args.devices * (result["cpu"] + result["client"]) / cores
                    console.print(f"CPU-bound p99 floor of {name}: {args.devices} x "
                                  f"({result['cpu']:.2f} + {result['client']:.2f}) ms / "
                                  f"{cores} cores = {bound:.0f} ms (measured {result['p99']:.0f})")
            abs_one = results.get("ab (compiled client), 1 at a time")
            abs_many = results.get(f"ab (compiled client), {args.devices} at once")
            if abs_one and abs_many:
                console.print(f"ab: {args.devices} at once vs 1 at a time: "
                              f"{abs_many['rate'] / abs_one['rate']:.2f}x the rate, "
                              f"p99 {abs_many['p99'] / max(abs_one['p99'], 1e-9):.1f}x")

            # the scanner, banned: every connection closed before a byte is read
            now = time.time()
            update_bans(work / "runtime", lambda bans: {**bans, SCANNER: Ban(
                SCANNER, now, now + 3600, 10, "bench")})
            time.sleep(1.5)  # the server looks at the ban file once a second
            started = time.perf_counter()
            refused = 0
            for _ in range(args.scan):
                sock = socket.socket()
                sock.bind((SCANNER, 0))
                try:
                    sock.connect(("127.0.0.1", port))
                    sock.settimeout(5)
                    refused += sock.recv(1) == b""
                except OSError:
                    refused += 1
                finally:
                    sock.close()
            elapsed = time.perf_counter() - started
            console.print(f"banned scanner: {refused}/{args.scan} connections refused in "
                          f"{elapsed:.1f} s ({args.scan / elapsed:.0f}/s), 0 bytes served")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)


if __name__ == "__main__":
    main()
