"""The indexer stage: contract events → the database (see :mod:`backend.indexer.chain`)."""

from backend.indexer.chain import ChainIndexer, IndexerThread

__all__ = ["ChainIndexer", "IndexerThread"]
