"""Fixtures for the LLM tests (other test folders can import them the same way)."""

from tests.llm.fake_openai import fake_openai, fast_backoff

__all__ = ["fake_openai", "fast_backoff"]
