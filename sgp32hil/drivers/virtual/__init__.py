"""The virtual bench: software eUICC, vpcd card bridge, simulated modem."""
