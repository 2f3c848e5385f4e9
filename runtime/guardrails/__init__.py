"""Guardrails: fast built-in rails in our own code, and NeMo Guardrails for the LLM rails."""
