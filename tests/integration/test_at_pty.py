"""AtChannel over a real pty: a scripted responder thread on the master side, port loss and reopen via a moved symlink."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from sgp32hil.drivers.at import AtChannel, AtTimeout, Modem, PortGone, load_profile


class PtyResponder:
    """Answers AT lines on a pty master; can drop the pty (EIO on the slave) and rebuild it behind the same symlink."""

    def __init__(self, link: str, answers: dict[str, str]):
        self.link = link
        self.answers = answers
        self.master = -1
        self.slave = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.build()

    def build(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self.master, self.slave = master, slave
        tmp = self.link + ".tmp"
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(master, self._stop), daemon=True)
        self._thread.start()

    def _serve(self, master: int, stop: threading.Event) -> None:
        buf = b""
        while not stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(master, 1024)
            except OSError:
                return
            buf += chunk
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                reply = self.answers.get(line.decode().strip())
                if reply is not None:
                    self.send(reply, master)

    def send(self, text: str, master: int | None = None) -> None:
        os.write(self.master if master is None else master, text.encode())

    def vanish(self) -> None:
        """Close both ends as a USB re-enumeration would: the client's reads fail with EIO."""
        self._stop.set()
        if self._thread:
            self._thread.join(1)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self.vanish()


ANSWERS = {
    "AT": "\r\nOK\r\n",
    "ATE0": "\r\nOK\r\n",
    "ATV1": "\r\nOK\r\n",
    "AT+CMEE=2": "\r\nOK\r\n",
    "AT+CEREG=5": "\r\nOK\r\n",
    "AT%XSIM=1": "\r\nOK\r\n",
    "AT+CPIN?": '\r\n+CPIN: READY\r\n\r\n+CEREG: 1,"002F","0012BEEF",7\r\nOK\r\n',
    "AT+CEREG?": '\r\n+CEREG: 5,1,"002F","0012BEEF",7\r\n\r\nOK\r\n',
    "AT%XICCID": "\r\n%XICCID: 8901234567012345678F\r\n\r\nOK\r\n",
    "AT+CFUN?": "\r\n+CFUN: 0\r\n\r\nOK\r\n",
    "AT+CME": "\r\n+CME ERROR: 13\r\n",
}


@pytest.fixture
def responder(tmp_path):
    r = PtyResponder(str(tmp_path / "modem0"), dict(ANSWERS))
    yield r
    r.close()


def test_commands_and_urc_over_pty(responder):
    with AtChannel(responder.link) as ch:
        sub = ch.subscribe("+CEREG:")
        assert ch.command("AT+CPIN?").lines == ("+CPIN: READY",)
        assert sub.get(2).line.startswith("+CEREG: 1,")
        assert ch.target == os.path.realpath(responder.link)


def test_driver_over_pty(responder):
    modem = Modem(AtChannel(responder.link).open(), load_profile("nordic-nrf91"))
    try:
        modem.init()
        assert modem.iccid() == "8901234567012345678"
        assert modem.cfun() == 0
        assert modem.registration().registered
        assert modem.sim_state().ready
    finally:
        modem.close()


def test_vanish_mid_command_raises_port_gone_then_reopen(responder):
    responder.answers.pop("AT+CEREG?")
    with AtChannel(responder.link) as ch:
        old_target = ch.target
        threading.Timer(0.2, responder.vanish).start()
        t0 = time.monotonic()
        with pytest.raises(PortGone):
            ch.command("AT+CEREG?", timeout=10)
        assert time.monotonic() - t0 < 3
        assert ch.gone
        threading.Timer(0.5, responder.build).start()
        new_target = ch.reopen(budget_s=5)
        assert new_target == os.path.realpath(responder.link)
        assert ch.command("AT+CPIN?").lines == ("+CPIN: READY",)
        events = [r.data.decode() for r in ch.transcript.records() if r.dir == "event"]
        assert any(e.startswith("port gone") for e in events) and any(e.startswith("reopen") for e in events)
        assert old_target is not None


def test_urc_subscription_survives_reopen(responder):
    with AtChannel(responder.link) as ch:
        sub = ch.subscribe("+CEREG:")
        responder.vanish()
        assert ch.wait_gone(2)
        responder.build()
        ch.reopen(budget_s=3)
        responder.send('\r\n+CEREG: 5,"002F","0012BEEF",7\r\n')
        assert sub.get(2).line.startswith("+CEREG: 5,")


def test_reopen_budget_exhausted(responder):
    with AtChannel(responder.link) as ch:
        responder.vanish()
        os.unlink(responder.link)
        assert ch.wait_gone(2)
        t0 = time.monotonic()
        with pytest.raises(PortGone, match="did not come back"):
            ch.reopen(budget_s=0.5)
        assert 0.4 < time.monotonic() - t0 < 2


def test_cme_and_timeout_over_pty(responder):
    with AtChannel(responder.link) as ch:
        with pytest.raises(Exception) as info:
            ch.command("AT+CME")
        assert getattr(info.value, "code", None) == 13
        with pytest.raises(AtTimeout):
            ch.command("AT+NOANSWER", timeout=0.3)
