"""triage entry points: ``server/`` answers HTTP (no torch), ``jobs/`` runs offline work, ``cli`` ties them."""
