# Stand-in for postgres (Docker Hub), for a machine with a Docker engine but no image
# registry: Debian bookworm's PostgreSQL 15 (Debian has no 16) with what the compose
# file relies on from the official image: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB create the role and database on first start, data in
# /var/lib/postgresql/data, password (scram) auth over TCP, trust on the local socket,
# listening on all addresses, pg_isready/psql on PATH, SIGINT to stop (fast shutdown).
ARG BASE=trustship-local/debian:bookworm
FROM ${BASE}

RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data && chmod 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME ["/var/lib/postgresql/data"]
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
