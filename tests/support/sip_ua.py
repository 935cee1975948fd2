"""A tiny SIP user agent for tests SIPp cannot play: SIP over TLS (Debian's SIPp is built
without it), SDES-SRTP offers, SUBSCRIBE/NOTIFY for BLF, a callee that answers with a codec
of its choosing, a phone that vanishes mid-call. One socket per agent, like a phone; digest
authentication (RFC 2617, MD5, qop=auth) as Asterisk asks for it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import select
import socket
import ssl
import time
from dataclasses import dataclass, field

CRLF = "\r\n"


@dataclass
class Message:
    first: str
    headers: list[tuple[str, str]]
    body: str

    @property
    def status(self) -> int | None:
        match = re.match(r"SIP/2\.0 (\d{3})", self.first)
        return int(match.group(1)) if match else None

    @property
    def method(self) -> str | None:
        return None if self.status is not None else self.first.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def cseq_method(self) -> str:
        return (self.header("CSeq") or " ").split()[-1]


def parse(data: str) -> Message:
    head, _, body = data.partition(CRLF + CRLF)
    lines = head.split(CRLF)
    headers = []
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.append((key.strip(), value.strip()))
    return Message(lines[0], headers, body)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """The Authorization value answering a WWW-Authenticate challenge."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    value = (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
             'algorithm=MD5')
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        value += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    if "opaque" in params:
        value += f', opaque="{params["opaque"]}"'
    return value + f', response="{response}"'


def sdp(port: int, payloads: dict[int, str], *, crypto: str | None = None,
        address: str = "127.0.0.1") -> str:
    """An audio offer/answer from `address`:`port`; with `crypto` an SDES RTP/SAVP one."""
    profile = "RTP/SAVP" if crypto else "RTP/AVP"
    lines = ["v=0", f"o=ua {port} {port} IN IP4 {address}", "s=-", f"c=IN IP4 {address}",
             "t=0 0", f"m=audio {port} {profile} {' '.join(str(p) for p in payloads)}"]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in payloads.items()]
    if crypto:
        lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{crypto}")
    return CRLF.join([*lines, "a=sendrecv", ""])


@dataclass
class Agent:
    """A SIP phone `user` talking to Asterisk at 127.0.0.1:`port` over UDP, TCP or TLS."""

    user: str
    password: str
    port: int
    transport: str = "udp"
    timeout: float = 10.0
    received: list[Message] = field(default_factory=list)
    #: the address it sends from (UDP), e.g. a provider's or a stranger's on loopback
    local_ip: str = "127.0.0.1"
    #: parameters after the request URI's host:port (`;line=...`)
    uri_params: str = ""
    #: the User-Agent header it sends (a vendor's, to play that phone)
    user_agent: str = "wildix-ast-test-ua"

    def __post_init__(self) -> None:
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self._buffer = b""
        if self.transport in ("tls", "tcp"):
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout,
                                           source_address=(self.local_ip, 0))
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the lab's self-signed certificate
            self.sock: socket.socket = context.wrap_socket(raw) if self.transport == "tls" \
                else raw
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((self.local_ip, 0))
            self.sock.connect(("127.0.0.1", self.port))
        self.local_port = self.sock.getsockname()[1]
        self.via_transport = self.transport.upper()
        # `sip:` URIs with transport=tls, as phones do (`sips:` would require a SIPS
        # Contact end to end)
        self.scheme = "sip"

    @property
    def contact(self) -> str:
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"<sip:{self.user}@{self.local_ip}:{self.local_port}{suffix}>"

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------ wire
    def send(self, text: str) -> None:
        self.sock.sendall(text.encode()) if self.transport != "udp" else \
            self.sock.send(text.encode())

    def _read_one(self, wait: float) -> Message | None:
        if self.transport == "udp":
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return None
            return parse(self.sock.recv(65535).decode(errors="replace"))
        deadline = time.monotonic() + wait
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self._buffer[:head_end].decode(errors="replace")
                match = re.search(r"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                total = head_end + 4 + (int(match.group(1)) if match else 0)
                if len(self._buffer) >= total:
                    data, self._buffer = self._buffer[:total], self._buffer[total:]
                    return parse(data.decode(errors="replace"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # no select() on a TLS socket: OpenSSL may already hold the next record, read
            # from the socket with the last one but not yet decrypted (pending() does not
            # count it), and select() would wait for bytes that already came
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65535)
            except TimeoutError:
                return None
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                return None
            self._buffer += chunk

    def receive(self, wait: float | None = None) -> Message | None:
        """The next message; requests Asterisk sends on its own (OPTIONS qualify, NOTIFY)
        are answered 200 and returned too."""
        message = self._read_one(self.timeout if wait is None else wait)
        if message is None:
            return None
        self.received.append(message)
        if message.method in ("OPTIONS", "NOTIFY"):
            self.reply(message, 200, "OK")
        return message

    def reply(self, request: Message, status: int, reason: str, body: str = "",
              to_tag: str | None = None) -> None:
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in request.all("Via")]
        to = request.header("To") or ""
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        lines += [f"From: {request.header('From')}", f"To: {to}",
                  f"Call-ID: {request.header('Call-ID')}", f"CSeq: {request.header('CSeq')}",
                  f"Contact: {self.contact}"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send(CRLF.join(lines) + CRLF + CRLF + body)

    def _request_text(self, method: str, uri: str, to: str, call_id: str,
                      extra: list[str], body: str, to_tag: str = "") -> str:
        self.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/{self.via_transport} {self.local_ip}:{self.local_port};"
                 f"branch={branch};rport",
                 "Max-Forwards: 70",
                 f"From: <{self.scheme}:{self.user}@127.0.0.1>;tag={self.tag}",
                 f"To: {to}{f';tag={to_tag}' if to_tag else ''}", f"Call-ID: {call_id}",
                 f"CSeq: {self.cseq} {method}", f"Contact: {self.contact}",
                 f"User-Agent: {self.user_agent}", *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return CRLF.join(lines) + CRLF + CRLF + body

    def request(self, method: str, target: str, *, extra: list[str] | None = None,
                body: str = "", call_id: str | None = None) -> Message:
        """Send a request to `target` (a user part), answer the digest challenge once, and
        return the final response (a 1xx is skipped)."""
        call_id = call_id or secrets.token_hex(8)
        uri = f"{self.scheme}:{target}@127.0.0.1:{self.port}{self.uri_params}"
        to = f"<{self.scheme}:{target}@127.0.0.1>"
        headers = list(extra or [])
        self.send(self._request_text(method, uri, to, call_id, headers, body))
        authorised = False
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is None:
                break
            if message.status is None or message.header("Call-ID") != call_id or \
                    message.cseq_method != method or message.status < 200:
                continue
            if message.status in (401, 407) and not authorised:
                authorised = True
                if method == "INVITE":
                    self.ack(message, uri, to, call_id)
                name = "WWW-Authenticate" if message.status == 401 else "Proxy-Authenticate"
                answer = "Authorization" if message.status == 401 else "Proxy-Authorization"
                challenge = message.header(name) or ""
                auth = digest(challenge, method, uri, self.user, self.password)
                self.send(self._request_text(method, uri, to, call_id,
                                             [*headers, f"{answer}: {auth}"], body))
                continue
            return message
        raise TimeoutError(f"{method} to {target}: no final response")

    def ack(self, response: Message, uri: str, to: str, call_id: str) -> None:
        """ACK a final INVITE response (same CSeq number; a non-2xx one in the INVITE's
        transaction, so with its Via)."""
        number = (response.header("CSeq") or "1").split()[0]
        to_header = response.header("To") or to
        via = response.all("Via")[0] if response.status != 200 else (
            f"SIP/2.0/{self.via_transport} {self.local_ip}:{self.local_port};"
            f"branch=z9hG4bK{secrets.token_hex(8)};rport")
        lines = [f"ACK {uri} SIP/2.0", f"Via: {via}",
                 "Max-Forwards: 70", f"From: <{self.scheme}:{self.user}@127.0.0.1>;tag={self.tag}",
                 f"To: {to_header}", f"Call-ID: {call_id}", f"CSeq: {number} ACK",
                 "Content-Length: 0"]
        self.send(CRLF.join(lines) + CRLF + CRLF)

    # ------------------------------------------------------------------ phone actions
    def register(self, expires: int = 120) -> Message:
        return self.request("REGISTER", self.user, extra=[f"Expires: {expires}"])

    def subscribe(self, target: str, event: str = "dialog") -> Message:
        accept = "application/dialog-info+xml" if event == "dialog" else \
            "application/pidf+xml"
        return self.request("SUBSCRIBE", target,
                            extra=[f"Event: {event}", f"Accept: {accept}", "Expires: 120"])

    def call(self, target: str, offer: str) -> tuple[Message, str]:
        """INVITE `target` with `offer`; ACK a 200. Returns (final response, Call-ID)."""
        call_id = secrets.token_hex(8)
        response = self.request("INVITE", target, body=offer, call_id=call_id)
        if response.status == 200:
            uri = f"{self.scheme}:{target}@127.0.0.1:{self.port}{self.uri_params}"
            self.ack(response, uri, f"<{self.scheme}:{target}@127.0.0.1>", call_id)
        return response, call_id

    def hangup(self, answer: Message, call_id: str) -> Message | None:
        """BYE the dialog `answer` (a 200 to our INVITE) set up; its final response."""
        contact = re.search(r"<([^>]+)>", answer.header("Contact") or "")
        uri = contact.group(1) if contact else f"{self.scheme}:127.0.0.1:{self.port}"
        to = answer.header("To") or ""
        self.send(self._request_text("BYE", uri, to, call_id, [], ""))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None and message.status is not None and \
                    message.cseq_method == "BYE" and message.status >= 200:
                return message
        return None

    def dtmf(self, answer: Message, call_id: str, digits: str, gap: float = 0.25) -> None:
        """Send `digits` in the dialog `answer` (a 200 to our INVITE) set up, one SIP INFO
        (`application/dtmf-relay`) each, `gap` seconds apart; their 200s are not waited
        for (other requests, a BYE, may come between)."""
        contact = re.search(r"<([^>]+)>", answer.header("Contact") or "")
        uri = contact.group(1) if contact else f"{self.scheme}:127.0.0.1:{self.port}"
        to = answer.header("To") or ""
        for digit in digits:
            body = f"Signal={digit}{CRLF}Duration=160{CRLF}"
            text = self._request_text("INFO", uri, to, call_id, [], "")
            head = text.removesuffix("Content-Length: 0" + CRLF + CRLF)
            self.send(f"{head}Content-Type: application/dtmf-relay{CRLF}"
                      f"Content-Length: {len(body.encode())}{CRLF}{CRLF}{body}")
            time.sleep(gap)

    def answer_call(self, answer_sdp: str, wait: float) -> Message | None:
        """Wait for an INVITE, answer it 200 with `answer_sdp`, then answer its ACK/BYE
        (a BYE gets 200). Returns the INVITE, or None if none came."""
        invite = self.wait_for("INVITE", wait)
        if invite is None:
            return None
        self.reply(invite, 200, "OK", answer_sdp, to_tag=secrets.token_hex(4))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None and message.method == "BYE":
                self.reply(message, 200, "OK")
                break
        return invite

    def wait_for(self, method: str, wait: float) -> Message | None:
        """The next request `method` Asterisk sends within `wait` seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None and message.method == method:
                return message
        return None


def register_status(port: int, extension: str, password: str,
                    timeout: float = 5.0) -> int | None:
    """The final status of one REGISTER of `extension` with `password` to the Asterisk at
    `port` on loopback (None: no answer)."""
    agent = Agent(extension, password, port, timeout=timeout)
    try:
        return agent.register(expires=60).status
    finally:
        agent.close()
