"""TrustShip backend: chain layer, oracle, store and REST API."""
