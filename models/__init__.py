"""The ML side of triage: data, taxonomy, encoder, training and checkpoints. Knows nothing of HTTP."""
