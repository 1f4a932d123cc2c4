"""Stable identity of an AT port that may vanish and come back (USB re-enumeration, pty rebuild).

A :class:`PortIdentity` is resolved to something ``serial.serial_for_url`` can open each time the
channel (re)opens, so a ``/dev/serial/by-path`` link, a pty symlink that a simulator moves, or a
USB serial number + interface number all keep pointing at the right tty after a reset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class PortIdentity:
    """Exactly one of ``path``, ``url`` or ``usb_serial`` (+ ``usb_interface``) is set."""

    path: str | None = None
    url: str | None = None
    usb_serial: str | None = None
    usb_interface: int | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.path, self.url, self.usb_serial) if x]
        if len(given) != 1:
            raise ValueError("PortIdentity needs exactly one of path, url, usb_serial")
        if self.usb_interface is not None and not self.usb_serial:
            raise ValueError("usb_interface only makes sense with usb_serial")

    @classmethod
    def parse(cls, spec: str | "PortIdentity") -> "PortIdentity":
        """``usb:<serial>[:<interface>]``, a pyserial URL (``socket://…``, ``loop://``…) or a device path."""
        if isinstance(spec, PortIdentity):
            return spec
        if spec.startswith("usb:"):
            serial, _, iface = spec[4:].partition(":")
            return cls(usb_serial=serial, usb_interface=int(iface, 0) if iface else None)
        if "://" in spec:
            return cls(url=spec)
        return cls(path=spec)

    def resolve(self) -> str | None:
        """What to open right now, or None while the port is absent."""
        if self.url:
            return self.url
        if self.path:
            return os.path.realpath(self.path) if os.path.exists(self.path) else None
        return find_usb_tty(self.usb_serial or "", self.usb_interface)

    def __str__(self) -> str:
        if self.url:
            return self.url
        if self.path:
            return self.path
        suffix = f":{self.usb_interface}" if self.usb_interface is not None else ""
        return f"usb:{self.usb_serial}{suffix}"


def find_usb_tty(serial: str, interface: int | None = None, context=None) -> str | None:
    """Device node of the tty on the USB device with this serial number and interface number.

    Matches ``ID_SERIAL_SHORT`` (or the device's ``serial`` attribute) and ``bInterfaceNumber``;
    with several ttys on one interface the lowest node name wins, so the choice is stable.
    """
    try:
        import pyudev
    except ImportError as exc:
        raise RuntimeError("USB port identity needs pyudev (Linux only)") from exc
    ctx = context or pyudev.Context()
    hits = []
    for tty in ctx.list_devices(subsystem="tty"):
        if tty.device_node is None:
            continue
        usb_if = tty.find_parent("usb", "usb_interface")
        usb_dev = tty.find_parent("usb", "usb_device")
        if usb_dev is None:
            continue
        dev_serial = usb_dev.properties.get("ID_SERIAL_SHORT") or _attr(usb_dev, "serial")
        if dev_serial != serial:
            continue
        if interface is not None:
            number = _attr(usb_if, "bInterfaceNumber") if usb_if is not None else None
            if number is None or int(number, 16) != interface:
                continue
        hits.append(tty.device_node)
    return sorted(hits)[0] if hits else None


def _attr(device, name: str) -> str | None:
    try:
        value = device.attributes.get(name)
    except (KeyError, AttributeError):
        return None
    if value is None:
        return None
    return value.decode("ascii", "replace").strip() if isinstance(value, bytes) else str(value).strip()
