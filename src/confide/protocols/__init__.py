"""Secure-computation protocols: pure state machines and their building blocks."""
