"""AT channel, generic 3GPP TS 27.007 driver and vendor profiles."""
