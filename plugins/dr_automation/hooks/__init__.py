"""Hooks for AWS services the Amazon provider does not cover (Route 53)."""
