"""Conformance plans use the sgp32-hil pytest plugin (registered through its pytest11 entry point)."""
