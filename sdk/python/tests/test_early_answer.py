"""A proxy in front of the API (nginx's client_max_body_size, a load balancer) may answer 413 as soon as
it has the headers and close without reading the body. The client still uploading gets a reset
connection; it must report the answer the proxy already sent, not a connection error. (The real
server drains a refused body instead; see test_client.py.)"""
import json
import socket
import threading
import unittest

from alveare import Alveare, APIConnectionError, RequestTooLargeError

REFUSAL = json.dumps({"error": {
    "message": "Request body is larger than the limit.", "type": "invalid_request_error", "param": None,
    "code": "request_too_large"}}).encode()


def answers_then_closes_unread(answer):
    """A one-connection listener: reads the headers, sends `answer` (or nothing), closes with the body unread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                if answer:
                    conn.sendall(answer)
                # Closed with the body unread, the kernel resets the connection.
                threading.Event().wait(0.2)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


# Far more than the socket buffers hold, so the client is still sending when the connection resets.
PROMPT = "x" * (16 * 1024 * 1024)


class AnAnswerBeforeTheBodyIsRead(unittest.TestCase):
    def test_is_reported_as_the_answer_every_time(self):
        answer = (b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(REFUSAL), REFUSAL))
        for _ in range(3):
            url = answers_then_closes_unread(answer)
            with self.assertRaises(RequestTooLargeError) as refused:
                Alveare(api_key="k", base_url=url, max_retries=0).infer(specialist="classify", prompt=PROMPT)
            self.assertEqual((refused.exception.status, refused.exception.code), (413, "request_too_large"))

    def test_without_an_answer_is_still_a_connection_error_naming_the_cause(self):
        url = answers_then_closes_unread(None)
        with self.assertRaises(APIConnectionError) as failed:
            Alveare(api_key="k", base_url=url, max_retries=0).infer(specialist="classify", prompt=PROMPT)
        self.assertRegex(str(failed.exception), r"\((ECONNRESET|EPIPE)\)$")


if __name__ == "__main__":
    unittest.main()
