"""Orchestration: the structured RAG pipeline and the bounded tool-calling agent."""
