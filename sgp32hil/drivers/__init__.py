"""Everything that talks to real or simulated hardware: AT, APDU, ES10, virtual bench."""
