"""Operators for what the Amazon provider does not cover (Route 53)."""
