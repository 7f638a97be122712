# Stand-in for ghcr.io/foundry-rs/foundry (anvil and cast), for a machine with a Docker
# engine but no image registry. The binaries are Foundry's own from the npm registry
# (@foundry-rs/anvil-linux-amd64 at the version contracts/package-lock.json pins, and
# the cast of the same release), packed by scripts/compose_standins.sh into the build
# context. Like the official image: both on PATH in /usr/local/bin, user foundry
# (uid 1000), entrypoint /bin/sh -c.
ARG BASE=trustship-local/debian:bookworm
FROM ${BASE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# ADD unpacks a local tarball (npm's layout: package/bin/<tool>)
ADD foundry-rs-anvil-linux-amd64-*.tgz /opt/foundry/anvil/
ADD foundry-rs-cast-linux-amd64-*.tgz /opt/foundry/cast/
RUN ln -s /opt/foundry/anvil/package/bin/anvil /usr/local/bin/anvil \
    && ln -s /opt/foundry/cast/package/bin/cast /usr/local/bin/cast \
    && anvil --version && cast --version \
    && useradd --uid 1000 --create-home foundry
USER foundry
WORKDIR /home/foundry
ENTRYPOINT ["/bin/sh", "-c"]
