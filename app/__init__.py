"""The HTTP side of triage: settings, wire schemas, errors, metrics, batching and the app factory."""
