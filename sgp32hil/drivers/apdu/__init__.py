"""APDU transports: PC/SC (pyscard), through a modem (+CCHO/+CGLA, +CSIM), in-process.

Every transport implements :class:`ApduTransport` (``transmit`` of one raw C-APDU, returning the raw
R-APDU with its status word). T=0 response handling (61xx / 6Cxx) lives in :mod:`.base`, so the
ES10 client behaves identically over a USB reader, a modem and the software eUICC.
"""

from .base import ApduError, ApduTransport, Response, TransportError, transceive

__all__ = ["ApduError", "ApduTransport", "Response", "TransportError", "transceive"]
