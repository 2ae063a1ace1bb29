"""Simulated microcontrollers: device profiles, sensor streams, budgets."""
