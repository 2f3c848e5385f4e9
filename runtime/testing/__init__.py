"""Test doubles that are real servers: reused by tests, benchmarks and later issues."""
