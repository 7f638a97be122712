# Stand-in for python:3.11-slim (Docker Hub), for a machine with a Docker engine but no
# image registry (scripts/compose_standins.sh builds it FROM a debootstrap'd bookworm).
# Where deploy/Dockerfile relies on it, it looks like the official image: `python` and
# `pip` on PATH installing into their own environment (not Debian's dist-packages),
# the C headers for building extensions, ca-certificates, apt-get for more.
ARG BASE=trustship-local/debian:bookworm
FROM ${BASE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/python \
    && /opt/python/bin/python -c "import ssl, sqlite3, tomllib" \
    && /opt/python/bin/pip --version
ENV PATH=/opt/python/bin:$PATH \
    LANG=C.UTF-8
CMD ["python3"]
