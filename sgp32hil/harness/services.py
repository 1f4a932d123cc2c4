"""Bring up what a bench needs and tear it down again: pcscd, the software eUICC (alone in a vpcd reader, or
inside the simulated modem and in the reader at once); the bundled eIM and SM-DP+ run as threads (plugin).

Everything started here is a child process (or a thread of ours) stopped by its own PID/handle; a
service that was already running (a system pcscd, a lab's reader) is used and left alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PCSCD = "/usr/sbin/pcscd"
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
VPCD_READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}


class ServiceError(RuntimeError):
    """A bench service could not be started; the message says which and why."""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def pcscd_answering(path: str = PCSCD_SOCKET) -> bool:
    """True when something accepts connections on pcscd's client socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def card_present(reader: str) -> bool:
    from ..drivers.apdu.pcsc import list_readers

    try:
        return any(r.name == reader and r.card_present for r in list_readers())
    except Exception:
        return False


@dataclass
class Pcscd:
    """pcscd for the vpcd readers: the running one, or our own (``--foreground``) stopped by PID."""

    proc: subprocess.Popen | None = None

    @classmethod
    def ensure(cls, timeout: float = 10.0) -> "Pcscd":
        if pcscd_answering():
            return cls()
        if not Path(PCSCD).exists():
            raise ServiceError(f"{PCSCD} is not installed (Debian packages pcscd and vsmartcard-vpcd)")
        # Nothing answers on the socket: its file and the pid file are left over (a killed or zombie pcscd),
        # and pcscd refuses to start while the pid file names a process that still exists.
        for stale in (PCSCD_SOCKET, "/run/pcscd/pcscd.pid"):
            Path(stale).unlink(missing_ok=True)
        proc = subprocess.Popen([PCSCD, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: pcscd_answering() or proc.poll() is not None, timeout, "pcscd to start")
        except TimeoutError:
            _stop(proc)
            raise ServiceError(f"pcscd did not open {PCSCD_SOCKET} within {timeout:.0f} s") from None
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip()
            raise ServiceError(f"pcscd exited with {proc.returncode}: {err or 'no message'}")
        return cls(proc)

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _CardProcess:
    """A child process holding a card in a vpcd reader: its log and its orderly stop."""

    proc: subprocess.Popen
    log_path: Path
    reader: str

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the process by PID, then wait (bounded) until pcscd sees the card gone from its reader."""
        _stop(self.proc)
        if self.reader in VPCD_READERS.values():
            try:
                wait_until(lambda: not card_present(self.reader), 10.0, f"{self.reader!r} to see the card removed")
            except TimeoutError:
                pass


@dataclass
class SoftEuiccProcess(_CardProcess):
    """``sgp32-hil virtual euicc`` as a child process, inserted in a vpcd reader."""

    state_dir: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    reader: str = field(init=False)

    def __post_init__(self) -> None:
        self.reader = VPCD_READERS.get(self.port, f"vpcd:{self.port}")

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        port: int = 35963,
        pki_dir: Path | None = None,
        eim_fqdn: str | None = None,
        provision: Path | None = None,
        log_dir: Path | None = None,
        timeout: float = 20.0,
    ) -> "SoftEuiccProcess":
        reader = VPCD_READERS.get(port)
        if reader and card_present(reader):
            raise ServiceError(f"{reader!r} already holds a card: another software eUICC is using vpcd port {port}")
        argv = [sys.executable, "-m", "sgp32hil.harness.cli", "virtual", "euicc", "--state", str(state_dir),
                "--vpcd-port", str(port)]
        if pki_dir:
            argv += ["--pki", str(pki_dir)]
        if eim_fqdn:
            argv += ["--eim-fqdn", eim_fqdn]
        if provision:
            argv += ["--provision", str(provision)]
        log_dir = Path(log_dir or state_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"soft-euicc-{port}.log"
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        svc = cls(Path(state_dir), port, proc, log_path)
        if reader:
            try:
                wait_until(lambda: card_present(reader) or proc.poll() is not None, timeout, f"a card in {reader!r}")
            except TimeoutError:
                svc.stop()
                raise ServiceError(f"software eUICC not seen in {reader!r} within {timeout:.0f} s; log: {log_path}")
            if proc.poll() is not None:
                raise ServiceError(f"software eUICC exited with {proc.returncode}: {svc.log_tail()}")
        return svc

@dataclass
class VirtualModemProcess(_CardProcess):
    """``sgp32-hil virtual modem`` as a child process: the simulated module on a pty (``link``) hosting the
    software eUICC in process, the same card also in a vpcd reader (unless ``vpcd_port`` is None: then the
    card is reached through the modem only), and the JSON-lines control socket.

    The eUICC asks the MT for REFRESH after a profile switch (ETSI TS 102 223 §6.4.7), so the MT reports
    +CPIN NOT READY/READY, re-reads the ICCID and registers where the new IMSI belongs, while the host
    IPAd reaches the card through pcscd as it would a USB reader.
    """

    run_dir: Path
    state_dir: Path
    vpcd_port: int | None
    proc: subprocess.Popen
    log_path: Path
    link: Path
    control: Path
    reader: str = field(init=False)

    def __post_init__(self) -> None:
        self.reader = VPCD_READERS.get(self.vpcd_port, f"vpcd:{self.vpcd_port}") if self.vpcd_port else None

    @classmethod
    def start(
        cls,
        run_dir: Path,
        state_dir: Path,
        *,
        vpcd_port: int | None = 35963,
        vendor: str = "quectel-bg95",
        networks: Path | None = None,
        pki_dir: Path | None = None,
        eim_fqdn: str | None = None,
        sim_init_s: float | None = None,
        refresh_delay_s: float | None = None,
        timeout: float = 20.0,
    ) -> "VirtualModemProcess":
        reader = VPCD_READERS.get(vpcd_port) if vpcd_port else None
        if reader and card_present(reader):
            raise ServiceError(f"{reader!r} already holds a card: another software eUICC is using vpcd port {vpcd_port}")
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        link, control = run_dir / "modem", run_dir / "control.sock"
        argv = [sys.executable, "-m", "sgp32hil.harness.cli", "virtual", "modem", "--vendor", vendor,
                "--euicc-state", str(state_dir), "--link", str(link), "--control", str(control)]
        if vpcd_port:
            argv += ["--vpcd-port", str(vpcd_port)]
        if networks:
            argv += ["--networks", str(networks)]
        if pki_dir:
            argv += ["--pki", str(pki_dir)]
        if eim_fqdn:
            argv += ["--eim-fqdn", eim_fqdn]
        if sim_init_s is not None:
            argv += ["--sim-init", str(sim_init_s)]
        if refresh_delay_s is not None:
            argv += ["--refresh-delay", str(refresh_delay_s)]
        log_path = run_dir / "virtual-modem.log"
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        svc = cls(run_dir, Path(state_dir), vpcd_port, proc, log_path, link, control)

        def up() -> bool:
            return proc.poll() is not None or (link.exists() and control.exists()
                                               and (reader is None or card_present(reader)))

        try:
            wait_until(up, timeout, f"the simulated modem ({link}) and a card in {reader!r}")
        except TimeoutError:
            svc.stop()
            raise ServiceError(f"simulated modem not up within {timeout:.0f} s (pty {link}, reader {reader!r}); "
                               f"log {log_path}: {svc.log_tail()}") from None
        if proc.poll() is not None:
            raise ServiceError(f"simulated modem exited with {proc.returncode}: {svc.log_tail()}")
        return svc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, timeout: float = 10.0):
        """A control client (``status``, ``euicc_info``, ``set_coverage``, ``set_reject``, ``move``, ``refresh`` ...)."""
        from ..drivers.virtual.modem.control import ControlClient

        return ControlClient(self.control, timeout=timeout)

    def call(self, method: str, **params):
        with self.client() as c:
            return c.call(method, **params)
