"""Cross-border data sharing: the sensitivity policy, jurisdictions, grants and the
disclosure log (docs/sharing.md). Sits above the store and below the API."""
