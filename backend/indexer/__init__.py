"""The indexer stage: contract events → the database, so the API answers from it.

:class:`ChainIndexer` follows the contracts (:mod:`backend.indexer.chain`);
:class:`IndexerThread` polls it. Ingest depends on it only through
:class:`backend.oracle.ingest.ChainFollower` (``chain_time``, ``catch_up()``);
``backend.runtime`` wires the two.
"""

from backend.indexer.chain import ChainIndexer, IndexerStatus, IndexerThread

__all__ = ["ChainIndexer", "IndexerStatus", "IndexerThread"]
