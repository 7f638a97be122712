# Stand-in for eclipse-mosquitto (Docker Hub), for a machine with a Docker engine but no
# image registry: Debian bookworm's mosquitto (2.0.11), laid out like the official image
# where the compose file and the broker config rely on it:
#   /usr/sbin/mosquitto, mosquitto_passwd/_sub/_pub/_ctrl on PATH, the dynamic-security
#   plugin at /usr/lib/mosquitto_dynamic_security.so, user and group mosquitto with
#   uid/gid 1883, /mosquitto/{config,data,log} owned by it, the same entrypoint
#   behaviour (as root it hands /mosquitto to mosquitto, where it can), and the same
#   command. mosquitto starts as root and drops to user mosquitto itself.
ARG BASE=trustship-local/debian:bookworm
FROM ${BASE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
    && rm -rf /var/lib/apt/lists/* \
    && old_uid=$(id -u mosquitto) old_gid=$(id -g mosquitto) \
    && groupmod --gid 1883 mosquitto \
    && usermod --uid 1883 --gid 1883 --home /var/empty mosquitto \
    && find / -xdev \( -uid "$old_uid" -o -gid "$old_gid" \) -exec chown -h mosquitto:mosquitto {} + \
    && ln -s /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so /usr/lib/mosquitto_dynamic_security.so \
    && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \
    && cp /etc/mosquitto/mosquitto.conf /mosquitto/config/mosquitto.conf \
    && chown -R mosquitto:mosquitto /mosquitto \
    && test -x /usr/sbin/mosquitto && test -f /usr/lib/mosquitto_dynamic_security.so \
    && command -v mosquitto_passwd mosquitto_sub mosquitto_pub mosquitto_ctrl
COPY mosquitto-entrypoint.sh /docker-entrypoint.sh
VOLUME ["/mosquitto/data", "/mosquitto/log"]
EXPOSE 1883
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
