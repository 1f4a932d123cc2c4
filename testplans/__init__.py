"""Conformance test modules run by ``sgp32-hil run`` (selected and parametrised by plans/*.yaml)."""
