"""A party's own watcher (``trustship watch``, docs/watcher.md): its orders' telemetry
read with its own broker login, checked against the chain, kept in its own record, and
breach evidence submitted with its own key when the operator has not proven it.

Layer: above the oracle (it uses the oracle's pure rules) and below nothing but the
CLI; it never imports the API, the store or the runtime (pyproject's import contracts).
"""

from backend.watcher.chain_view import Binding, ChainView, OrderView
from backend.watcher.service import Subscriber, Watcher, WatcherConfig, run_watcher
from backend.watcher.store import Submission, WatcherStore

__all__ = [
    "Binding",
    "ChainView",
    "OrderView",
    "Submission",
    "Subscriber",
    "Watcher",
    "WatcherConfig",
    "WatcherStore",
    "run_watcher",
]
