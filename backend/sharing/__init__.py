"""Data sharing across borders: the sensitivity policy, jurisdictions, grants and the
disclosure log (docs/sharing.md), and GS1 EPCIS 2.0 exchange (docs/epcis.md). Sits above
the store and below the API."""
