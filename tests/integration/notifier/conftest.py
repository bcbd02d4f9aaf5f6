"""Real local servers for the notifier's integration tests: a fake Slack (``http.server`` in
a thread; an incoming webhook, a Web API, a response_url: any POST path) and an SMTP server
(aiosmtpd ``Controller``), both on 127.0.0.1 with free ports. ``make_incident`` comes from
tests/conftest.py."""

import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    return _free_port()


# --------------------------------------------------------------------------- Slack


@dataclass
class Post:
    at: float
    path: str
    content_type: str
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case names."""


Answer = tuple[int, dict[str, str], str | dict | Callable[[Post], str | dict]]


@dataclass
class FakeSlack:
    """Answers from ``script`` in order, then ``default``; records every request.

    An answer's body is text, or a dict sent as JSON (a Web API answer), or a function of
    the ``Post`` returning either (to echo the posted channel, say)."""

    url: str
    script: list[Answer] = field(default_factory=list)
    default: Answer = (200, {}, "ok")
    posts: list[Post] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        """The server's root URL, for the Web API base or a response_url."""
        return self.url.split("/services/", 1)[0]

    def next_answer(self) -> Answer:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    state: dict[str, FakeSlack] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            fake = state["fake"]
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"_raw": raw.decode(errors="replace")}
            post = Post(
                time.monotonic(),
                self.path,
                self.headers.get("Content-Type", ""),
                parsed,
                {k.lower(): v for k, v in self.headers.items()},
            )
            with fake.lock:
                fake.posts.append(post)
            status, headers, body = fake.next_answer()
            if callable(body):
                body = body(post)
            is_json = not isinstance(body, str)
            data = (json.dumps(body) if is_json else body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json" if is_json else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    state["fake"] = FakeSlack(url=f"http://{host}:{port}/services/T000/B000/secret")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state["fake"]
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- SMTP


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: records accepted mail; ``data_script`` / ``rcpt_reply`` inject
    error replies (the script is consumed first, one reply per DATA)."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    data_script: list[str] = field(default_factory=list)
    data_commands: int = 0
    rcpt_reply: str | None = None
    logins: list[tuple[str, bool]] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.data_script:
            return self.data_script.pop(0)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, bool(session.ssl), login)
        )
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login == b"steward" and auth_data.password == b"s3cret"
        )
        self.logins.append((auth_data.login.decode(), ok))
        # handled=False: aiosmtpd sends the 235 / 535 reply itself
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@pytest.fixture
def smtp() -> Iterator[SmtpRecorder]:
    """A plain SMTP server: no TLS, no auth."""
    recorder = SmtpRecorder(port=_free_port())
    controller = Controller(recorder, hostname=recorder.host, port=recorder.port)
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate for the STARTTLS test")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_tls(tls_cert: tuple[Path, Path]) -> Iterator[SmtpRecorder]:
    """An SMTP server that requires STARTTLS and AUTH (login steward / s3cret)."""
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = SmtpRecorder(port=_free_port())
    controller = Controller(
        recorder,
        hostname=recorder.host,
        port=recorder.port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=recorder.authenticate,
    )
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()
