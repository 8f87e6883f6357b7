"""The HTTP server: wire schemas, errors, metrics, settings, the batcher and the service. No torch here."""
