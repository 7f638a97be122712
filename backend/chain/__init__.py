"""The chain layer: one connection path (eth-tester or ``RPC_URL``), artifacts,
deployment, the one transaction sender, error decoding and typed contract wrappers.

Typical use::

    chain = connect(settings)                       # eth-tester when RPC_URL is unset
    deployment = load_deployment(settings.DEPLOYMENT_FILE, chain)
    c = Contracts.from_deployment(chain, deployment)
    order_id = c.po.create_and_fund_order(supplier, terms, by=buyer).value
"""

from backend.chain.connection import Accounts, Chain, connect, dev_private_key
from backend.chain.contracts import (
    ETH,
    Contracts,
    Escrow,
    FleetProof,
    Order,
    OrderState,
    PurchaseOrders,
    QualityVerification,
    Stablecoin,
    Terms,
)
from backend.chain.deploy import Deployment, deploy_all, load_deployment, verify_deployment
from backend.chain.errors import (
    ChainError,
    ContractRevert,
    DeploymentError,
    ReceiptTimeout,
    TransactionFailed,
    TransactionRejected,
    TransportError,
    TxDropped,
    UndecodedRevert,
)
from backend.chain.sender import PendingTx, RetryPolicy, TxResult, TxSender
from backend.chain.settlement import settlement, settlement_split

__all__ = [
    "ETH",
    "Accounts",
    "Chain",
    "ChainError",
    "ContractRevert",
    "Contracts",
    "Deployment",
    "DeploymentError",
    "FleetProof",
    "Escrow",
    "Order",
    "OrderState",
    "PendingTx",
    "PurchaseOrders",
    "QualityVerification",
    "ReceiptTimeout",
    "RetryPolicy",
    "Stablecoin",
    "Terms",
    "TransactionFailed",
    "TransactionRejected",
    "TransportError",
    "TxDropped",
    "TxResult",
    "TxSender",
    "UndecodedRevert",
    "connect",
    "deploy_all",
    "dev_private_key",
    "load_deployment",
    "settlement",
    "settlement_split",
    "verify_deployment",
]
