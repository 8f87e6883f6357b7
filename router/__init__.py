"""Routing policy over probabilities and labels: pure Python, no torch, no HTTP."""
