"""Test doubles shipped with the package so tests, benchmarks and crash tests share them."""
