"""Phrase pools of the synthetic ticket generator: ``<lang>.json`` per language and ``shared.json``.

Read and validated by :mod:`models.generate` (see ``LANGUAGE_SCHEMA`` and ``SHARED_SCHEMA`` there).
"""
