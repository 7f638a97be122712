#!/bin/sh
# What the eclipse-mosquitto image's entrypoint does: started as root, hand /mosquitto
# to the mosquitto user (read-only mounts stay as they are), then run the command.
set -e
if [ "$(id -u)" = 0 ] && [ -d /mosquitto ]; then
    chown -R mosquitto:mosquitto /mosquitto 2>/dev/null || true
fi
exec "$@"
