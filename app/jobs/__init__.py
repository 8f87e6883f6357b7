"""Offline jobs: evaluate, calibrate-router, retrain, bench. They call the same pipeline the server serves."""
