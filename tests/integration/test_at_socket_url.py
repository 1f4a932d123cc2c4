"""The AT channel over a ``socket://`` URL, the shape of a modem exported by ser2net (raw TCP) in a rack."""

from __future__ import annotations

import socket
import threading

from sgp32hil.drivers.at import Modem

REPLIES = {b"AT": b"OK", b"ATE0": b"OK", b"AT+CGMI": b"u-blox\r\n\r\nOK", b"AT+CGMM": b"SARA-R510M8S\r\n\r\nOK",
           b"AT+CGMR": b"02.06,A00.01\r\n\r\nOK", b"AT+CGSN": b"356726100001234\r\n\r\nOK",
           b"ATI": b"u-blox\r\nSARA-R510M8S\r\n\r\nOK", b"AT+CCID": b"+CCID: 89882280666027595366\r\n\r\nOK"}


def _responder(server: socket.socket, stop: threading.Event) -> None:
    conn, _ = server.accept()
    with conn:
        buf = b""
        while not stop.is_set():
            data = conn.recv(1024)
            if not data:
                return
            buf += data
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                reply = REPLIES.get(line.strip(), b"OK")  # settings issued by init() are accepted
                conn.sendall(b"\r\n" + reply + b"\r\n")
                if line.strip() == b"AT+CGMI":
                    conn.sendall(b"\r\n+CEREG: 1,\"002F\",\"0012BEEF\",7\r\n")


def test_modem_over_a_raw_tcp_url():
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=_responder, args=(server, stop), daemon=True)
    thread.start()
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    try:
        with Modem.open(url, "ublox-sara-r5") as m:
            assert m.identity().manufacturer == "u-blox"
            assert m.iccid() == "89882280666027595366"
            assert m.channel.urc_history(0)[-1].line.startswith("+CEREG: 1")
            assert "tx" in m.channel.transcript.to_jsonl()
    finally:
        stop.set()
        server.close()
        thread.join(5)
