"""Simulated cellular module on a pty with a network model."""
