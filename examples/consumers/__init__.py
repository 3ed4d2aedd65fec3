"""Real-time analytics consumers for ``kcl-worker`` (page-view counts, busy-user anomalies)."""
