"""Private keys everyone knows, and the one check that refuses them outside dev mode.

A key is *public* when anyone can compute or look it up, so whatever it holds or
may sign can be taken by anyone:

* the project's dev keys: ``dev_private_key(role)`` for every dev role (the API's
  dev parties and the chain layer's dev accounts) and the dev oracle key
  (``ORACLE_PRIVATE_KEY``'s default);
* the ten accounts of the ``test test test test test test test test test test test
  junk`` mnemonic (BIP-44 path ``m/44'/60'/0'/0/i``) that anvil and hardhat fund by
  default (tests/core/test_keys.py derives them from the mnemonic).

Keys are compared after :func:`normalize_private_key` (surrounding space, ``0x`` /
``0X`` prefix and letter case do not matter), so a dev key cannot slip through
written differently. :func:`refuse_public_key` is what every place that configures
a key calls (``ORACLE_PRIVATE_KEY``, ``DEPLOYER_PRIVATE_KEY``, ``API_KEYS`` private
keys); it raises a :class:`~backend.core.errors.ConfigurationError` naming the setting.
"""

from __future__ import annotations

from eth_utils import keccak

from backend.core.errors import ConfigurationError

#: The dev roles: the API's seeded parties and the chain layer's dev accounts.
DEV_ROLES = ("admin", "buyer", "supplier", "arbiter", "auditor", "stranger")

#: The oracle's development key (``ORACLE_PRIVATE_KEY``'s default; funded explicitly
#: in dev mode).
DEV_ORACLE_PRIVATE_KEY = "0x" + "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"

#: ``SHARING_PSEUDONYM_KEY``'s default: public, so refused outside dev mode.
DEV_PSEUDONYM_KEY = "trustship-dev-pseudonym-key (public: dev mode only)"

#: The well-known mnemonic of anvil's and hardhat's default accounts.
WELL_KNOWN_MNEMONIC = "test test test test test test test test test test test junk"

#: Its first ten accounts' private keys (m/44'/60'/0'/0/0 … /9), funded by anvil and
#: hardhat on every fresh dev chain.
WELL_KNOWN_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


def dev_private_key(role: str) -> str:
    """The fixed development key of a role: keccak256("trustship-dev:<role>").

    Public by construction — for dev chains only. The oracle's dev key is
    :data:`DEV_ORACLE_PRIVATE_KEY` instead.
    """
    return "0x" + keccak(text=f"trustship-dev:{role}").hex()


def normalize_private_key(key: str) -> str:
    """``key`` as 64 lower-case hex digits: without surrounding space or a ``0x``/``0X``."""
    k = key.strip().lower()
    return k[2:] if k.startswith("0x") else k


#: Every public key, normalised.
PUBLIC_PRIVATE_KEYS: frozenset[str] = frozenset(
    normalize_private_key(k)
    for k in (
        DEV_ORACLE_PRIVATE_KEY,
        *(dev_private_key(role) for role in DEV_ROLES),
        *WELL_KNOWN_PRIVATE_KEYS,
    )
)


def is_public_key(key: str) -> bool:
    """True when ``key`` (in any spelling) is one of :data:`PUBLIC_PRIVATE_KEYS`."""
    return normalize_private_key(key) in PUBLIC_PRIVATE_KEYS


def refuse_public_key(setting: str, key: str) -> None:
    """Raise :class:`ConfigurationError` naming ``setting`` when ``key`` is public."""
    if is_public_key(key):
        raise ConfigurationError(
            f"{setting} is a publicly known private key (a TrustShip dev key or one of the "
            "default anvil/hardhat accounts): anyone can sign with it. Outside dev mode set "
            "a key of your own, or set DEV_MODE=true on a dev chain"
        )
