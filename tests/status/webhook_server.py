"""A real local HTTP server that receives webhooks, counts them and can fail on demand."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self):
        self.received: list[dict] = []
        self.requests: list[tuple[dict, bytes]] = []  # (headers, raw body) of each delivery
        self.attempts = 0
        self.fail_next = 0  # answer 500 to this many requests first
        # (status, headers, body) to answer every request with instead (a 403 with a
        # chatty body, a redirect), and seconds to wait before answering.
        self.answer: tuple[int, dict, bytes] | None = None
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.delay_s:
                    import time
                    time.sleep(receiver.delay_s)
                if receiver.answer is not None:
                    status, headers, answer = receiver.answer
                    receiver.requests.append((dict(self.headers), body))
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"down")
                    return
                receiver.received.append(json.loads(body))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
