"""sgp32-hil: hardware-in-the-loop test and conformance harness for GSMA SGP.32."""

__version__ = "0.1.0"
