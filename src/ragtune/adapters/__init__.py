"""Adapters: one small interface per outside system, each with real implementations."""
