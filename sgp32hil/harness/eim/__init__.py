"""The bundled eIM (SGP.32 v1.2): ESipa server, eUICC packages, orders, operator API, state in SQLite."""
