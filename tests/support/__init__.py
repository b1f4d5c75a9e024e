"""Shared helpers for tests (servers, fast model settings)."""
