"""Supplier scorecards: a pure function of the contracts' events (docs/scorecards.md).

:func:`scorecards` takes a list of :class:`ChainEvent` (what the indexer stored in
``chain_events``, or what anyone decodes from ``eth_getLogs``) and answers every
supplier's record, all time and over the last 90 days, with its lanes. Nothing
else goes in: no database, no chain calls, no clock.
"""

from backend.scorecard.compute import (
    RECENT_DAYS,
    SCORED_EVENTS,
    Backtest,
    ChainEvent,
    Figures,
    LaneCard,
    Scorecard,
    TokenFigures,
    backtests,
    lane_of,
    lane_records,
    ranked,
    scorecards,
)

__all__ = [
    "RECENT_DAYS",
    "SCORED_EVENTS",
    "Backtest",
    "ChainEvent",
    "Figures",
    "LaneCard",
    "Scorecard",
    "TokenFigures",
    "backtests",
    "lane_of",
    "lane_records",
    "ranked",
    "scorecards",
]
