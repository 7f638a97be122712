"""Data sharing across borders: sensitivity policy, grants, disclosure log, EPCIS 2.0 exchange."""
