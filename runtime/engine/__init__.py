"""The vLLM engine's own environment: where it is, how it is made, and what its parser accepts.

vLLM pins torch, transformers, fastapi and setuptools exactly, so it never shares the project's
environment: it lives in a virtualenv of its own (`aistack engine install`) and is only ever run
as a child process, through the interpreter `find_engine()` names.
"""
