"""The benchmarks' local Slack: a real HTTP server that answers every incoming-webhook post
with 200 and hands its body and arrival time (``time.time()``) to a callback."""

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the notifier posts up to 32 at once; a backlog of 5 resets connections
    daemon_threads = True


def start_slack_receiver(on_post: Callable[[bytes, float], None]) -> ThreadingHTTPServer:
    """Serves in a daemon thread until ``shutdown()``; its port is ``server_port``."""

    class SlackStandIn(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Slack's endpoint
        # headers and body go out in two writes: with Nagle's algorithm the second waits for
        # the client's delayed ACK (40 ms), which would pace every post
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            on_post(body, time.time())
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), SlackStandIn)
    threading.Thread(target=server.serve_forever, name="slack-stand-in", daemon=True).start()
    return server
