#!/usr/bin/env bash
# Local stand-ins for the four upstream images of docker-compose.yml, for a machine
# that has a Docker engine but reaches no image registry (CI here; an offline lab):
#
#   scripts/compose_standins.sh                                  # build what is missing, print the settings
#   scripts/compose_standins.sh docker compose up -d --build --wait   # ...or run a command with them
#   eval "$(scripts/compose_standins.sh)"                         # ...or export them into this shell
#
# It builds, once, a Debian bookworm base image with debootstrap (no `docker pull`
# needed), then FROM it (deploy/standins/*.Dockerfile, cached by Docker's layer cache):
#
#   ANVIL_IMAGE      ghcr.io/foundry-rs/foundry  ->  trustship-local/foundry   (anvil + cast from npm)
#   MOSQUITTO_IMAGE  eclipse-mosquitto           ->  trustship-local/mosquitto (Debian's 2.0.11)
#   POSTGRES_IMAGE   postgres:16-alpine          ->  trustship-local/postgres  (Debian's 15)
#   PYTHON_IMAGE     python:3.11-slim            ->  trustship-local/python    (Debian's 3.11)
#
# and sets EXTRA_CA_CERTS, unless it is set, to the host's local CA certificates
# (/usr/local/share/ca-certificates/*.crt: a TLS-inspecting proxy's CA lives there), so
# that pip in the image build trusts what the host trusts. docker-compose.yml itself is
# unchanged: with none of these settings it uses the official images.
#
# Settings: STANDIN_PREFIX (image names, default trustship-local), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), TRUSTSHIP_CACHE (npm tarballs, default
# ~/.cache/trustship). Needs a running Docker engine (scripts/compose_smoke.sh starts
# one), and as root it installs debootstrap from Debian if it is missing.
# Clean up: docker rmi $(docker images -q 'trustship-local/*') (docs/compose.md).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${STANDIN_PREFIX:-trustship-local}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${TRUSTSHIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trustship}
BASE_IMAGE=$PREFIX/debian:bookworm
STANDINS=$REPO/deploy/standins

ROOTFS=""  # the debootstrap tree while it exists (200 MB): removed on any exit
trap '[ -z "$ROOTFS" ] || rm -rf "$ROOTFS"' EXIT

log() { printf '[standins %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# run "what" cmd...: output to a log; its tail on failure
quietly() {
    local what=$1 out
    shift
    out=$(mktemp)
    if ! "$@" >"$out" 2>&1; then
        tail -n 60 "$out" >&2
        rm -f "$out"
        die "$what failed"
    fi
    rm -f "$out"
}

base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE: cached"
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        [ "$(id -u)" = 0 ] || die "debootstrap is not installed (apt-get install debootstrap)"
        log "installing debootstrap (Debian package)"
        quietly "apt-get install debootstrap" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 debootstrap
    fi
    local root
    root=$(mktemp -d /tmp/trustship-rootfs.XXXXXX)
    ROOTFS=$root
    log "base image $BASE_IMAGE: debootstrap --variant=minbase bookworm from $MIRROR"
    quietly debootstrap debootstrap --variant=minbase bookworm "$root" "$MIRROR"
    # the sources of the official debian:bookworm image, and no caches in the image
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/var/log/*.log
    tar -C "$root" -c . | docker import \
        --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
        --message "debootstrap --variant=minbase bookworm $MIRROR" - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    ROOTFS=""
    log "base image $BASE_IMAGE: $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" |
        awk '{printf "%d MB", $1/1e6}')"
}

# Foundry's own anvil (the version contracts/package-lock.json pins, checked against its
# integrity) and the cast of the same release, as npm tarballs.
foundry_context() {
    local lock=$REPO/contracts/package-lock.json version integrity dir
    read -r version integrity < <(python3 - "$lock" <<'EOF'
import json, sys
pkg = json.load(open(sys.argv[1]))["packages"]["node_modules/@foundry-rs/anvil-linux-amd64"]
print(pkg["version"], pkg["integrity"])
EOF
)
    dir=$CACHE/foundry-$version
    mkdir -p "$dir"
    if [ ! -s "$dir/foundry-rs-anvil-linux-amd64-$version.tgz" ] ||
        [ ! -s "$dir/foundry-rs-cast-linux-amd64-$version.tgz" ]; then
        log "foundry $version: npm pack @foundry-rs/anvil-linux-amd64 @foundry-rs/cast-linux-amd64"
        local packed
        packed=$(cd "$dir" && npm pack --json --pack-destination . \
            "@foundry-rs/anvil-linux-amd64@$version" "@foundry-rs/cast-linux-amd64@$version")
        printf '%s' "$packed" | python3 -c '
import json, sys
packed = {p["name"]: p["integrity"] for p in json.load(sys.stdin)}
sys.exit(packed["@foundry-rs/anvil-linux-amd64"] != sys.argv[1])' "$integrity" || {
            rm -rf "$dir"
            die "the npm tarball of anvil $version does not match contracts/package-lock.json"
        }
    fi
    FOUNDRY_VERSION=$version
    FOUNDRY_CONTEXT=$dir
}

build() {  # build NAME TAG CONTEXT
    local name=$1 tag=$2 context=$3
    quietly "docker build $tag" docker build --build-arg "BASE=$BASE_IMAGE" \
        -f "$STANDINS/$name.Dockerfile" -t "$tag" "$context"
    log "$tag: ready"
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info); scripts/compose_smoke.sh starts one"

base_image
foundry_context
build python "$PREFIX/python:3.11" "$STANDINS"
build foundry "$PREFIX/foundry:$FOUNDRY_VERSION" "$FOUNDRY_CONTEXT"
build mosquitto "$PREFIX/mosquitto:2.0" "$STANDINS"
build postgres "$PREFIX/postgres:15" "$STANDINS"

export ANVIL_IMAGE=$PREFIX/foundry:$FOUNDRY_VERSION
export MOSQUITTO_IMAGE=$PREFIX/mosquitto:2.0
export POSTGRES_IMAGE=$PREFIX/postgres:15
export PYTHON_IMAGE=$PREFIX/python:3.11
if [ -z "${EXTRA_CA_CERTS+set}" ]; then
    EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
    export EXTRA_CA_CERTS
fi

if [ $# -gt 0 ]; then
    exec "$@"
fi
for name in ANVIL_IMAGE MOSQUITTO_IMAGE POSTGRES_IMAGE PYTHON_IMAGE EXTRA_CA_CERTS; do
    printf 'export %s=%q\n' "$name" "${!name}"
done
