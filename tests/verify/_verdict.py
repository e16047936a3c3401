"""Shared pieces of the verdict-document tests (test_report, test_html, test_document)."""

from __future__ import annotations

from typing import Any

ENVIRONMENT: dict[str, Any] = {
    "python": "3", "platform": "test", "torch": "x", "transformers": "y", "device": "cpu",
    "dtype": "float32", "threads": 1, "versions": {"numpy": "2"}, "torch_threads": 1,
    "torch_version": "x", "executor": "local", "ray_address": None, "machine": "x86_64",
}
"""What ``stages.environment`` records (every field ``VerifyEnvironment`` types)."""
