"""A stand-in for the Alveare API on a real loopback socket that answers each request as a test scripts it:
answers the real server never gives on cue (a body that stalls, a stream cut before [DONE], an error event
with a given code). Each connection gets one request and one scripted answer, written as raw bytes."""
import json
import socket
import threading
import time
from typing import Callable, Dict, List, Optional


class Seen:
    def __init__(self, method: str, path: str, headers: Dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # names lower-cased
        self.body = body
        self.at = time.monotonic()


Script = Callable[[socket.socket, Seen], None]


class ScriptedApi:
    def __init__(self) -> None:
        self.script: Script = lambda conn, seen: conn.sendall(response(404, b"{}"))
        self.requests: List[Seen] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closing = False
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                part = conn.recv(65536)
                if not part:
                    return
                buffer += part
            head, body = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                part = conn.recv(65536)
                if not part:
                    break
                body += part
            seen = Seen(method, path, headers, body)
            self.requests.append(seen)
            try:
                self.script(conn, seen)
            except OSError:
                pass

    def close(self) -> None:
        self._closing = True
        self._listener.close()


def response(status: int, body: bytes, headers: Optional[Dict[str, str]] = None, length: Optional[int] = None) -> bytes:
    """Raw HTTP/1.1 response bytes; `length` overrides Content-Length (to promise more than is sent)."""
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body) if length is None else length), "Connection": "close"}
    fields.update(headers or {})
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


def stream_head(headers: Optional[Dict[str, str]] = None) -> bytes:
    """The head of an event stream without a length: the body ends when the connection closes."""
    fields = {"Content-Type": "text/event-stream", "Connection": "close"}
    fields.update(headers or {})
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode("latin-1")


def chunk_event(content: str, finish_reason: Optional[str] = None, index: int = 0) -> bytes:
    chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "alveare-chat",
             "choices": [{"index": index, "delta": {"content": content}, "finish_reason": finish_reason}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def error_event(code: str, type_: str = "server_error") -> bytes:
    return b"data: " + json.dumps({"error": {"message": f"scripted {code}", "type": type_, "code": code, "param": None}}).encode() + b"\n\n"


def error_body(code: str, type_: str = "server_error") -> bytes:
    return json.dumps({"error": {"message": f"scripted {code}", "type": type_, "code": code, "param": None}}).encode()


def hold(conn: socket.socket, seconds: float = 30) -> None:
    """Keeps a connection open and silent until the client closes it (or `seconds` pass)."""
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
