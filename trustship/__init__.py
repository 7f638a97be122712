"""The `trustship` command line: the composition root.

`backend` and `iot_simulator` never import each other (they meet only on the
MQTT wire); the commands that need both in one process (`demo`, `replay`) live
here, and so does the CLI that exposes every part.
"""
