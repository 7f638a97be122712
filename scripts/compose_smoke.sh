#!/usr/bin/env bash
# The stack of docker-compose.yml on a real Docker engine, end to end (CI runs it from
# .ci/run; anyone with Docker can):
#
#   scripts/compose_smoke.sh                     # local stand-ins for the upstream images
#   scripts/compose_smoke.sh --official-images   # the official images (needs a registry)
#
#  1. engine: uses the Docker engine that answers `docker info`; if none does (root
#     only) installs Debian's docker.io if missing, and the Compose v2 and buildx CLI
#     plugins from Debian trixie's packages if `docker compose` is missing, starts
#     dockerd itself and, at the end, stops that dockerd by PID and removes the
#     iptables chains and docker0 bridge it left;
#  2. images: scripts/compose_standins.sh (a debootstrap'd base, anvil/cast from npm,
#     Debian's mosquitto, PostgreSQL and Python), because no image registry is
#     reachable here; docker-compose.yml gets them through its image settings only;
#  3. `docker compose up -d --build --wait`, host ports mapped to free ones;
#  4. checks: /health ok with database, chain, broker, indexer; the web dashboard's page
#     and browser libraries served from the image; the scenario catalogue
#     replayed through the API by the simulator service, every scenario settling as
#     expected; the broker refusing an anonymous client and a device publishing under
#     another device's topics (scripts/compose_checks.py); the trustship container
#     killed (SIGKILL) and started again mid-telemetry, every reading published
#     stored and the order settled as expected;
#  5. `docker compose down -v`, and nothing of the project left behind.
#
# Each step prints its elapsed time; any failed check fails the run (exit 1). A trap
# tears everything down on failure too. Images and the base image stay cached for the
# next run (docs/compose.md says how to remove them). Settings: COMPOSE_SMOKE_PROJECT
# (default trustship-smoke), ANVIL_HOST_PORT/MQTT_HOST_PORT/API_HOST_PORT (default:
# free ports), DEBIAN_MIRROR, and those of scripts/compose_standins.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

PROJECT=${COMPOSE_SMOKE_PROJECT:-trustship-smoke}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The restart check's scenario, replayed once more after the whole catalogue (a second
# run opens new orders: the same devices' seqs are stored again for them), at a pace
# where its five days of telemetry take about 20 s; trustship is killed once
# RESTART_AFTER of its 960 readings are stored.
RESTART_SCENARIO=${COMPOSE_SMOKE_RESTART_SCENARIO:-cold_chain_breach}
RESTART_SPEED=${COMPOSE_SMOKE_RESTART_SPEED:-21600}
RESTART_AFTER=${COMPOSE_SMOKE_RESTART_AFTER:-240}
REPLAY_TIMEOUT_S=900
OFFICIAL=0
for arg in "$@"; do
    case $arg in
        --official-images) OFFICIAL=1 ;;
        -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

START=$(date +%s.%N)
WORK=$(mktemp -d /tmp/trustship-smoke.XXXXXX)
FAILED=0
DOCKERD_PID=""
STACK_UP=0
declare -a SUMMARY=()

elapsed() { awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%6.1fs", n - s }'; }
STEP_NAME="" STEP_T=""
step() {
    end_step
    STEP_NAME=$1 STEP_T=$(date +%s.%N)
    printf '\n==> [%s] %s\n' "$(elapsed)" "$1"
}
end_step() {
    if [ -n "$STEP_NAME" ]; then
        SUMMARY+=("$(awk -v s="$STEP_T" -v n="$(date +%s.%N)" 'BEGIN { printf "%7.1f s", n - s }')  $STEP_NAME")
    fi
    STEP_NAME=""
}
info() { printf '    %s\n' "$*"; }
ok() { printf '    ok   %s\n' "$*"; }
fail() { printf '    FAIL %s\n' "$*"; FAILED=$((FAILED + 1)); }
die() { printf '    FATAL %s\n' "$*"; FAILED=$((FAILED + 1)); exit 1; }
tail_of() {
    if [ -f "$1" ]; then tail -n "${2:-40}" "$1" | sed 's/^/      | /'; fi
}

compose() { docker compose -p "$PROJECT" "$@"; }
simulator() { docker compose -p "$PROJECT" --profile simulator run --rm -T "$@"; }

# ---- teardown (also on failure) ---------------------------------------------------------

teardown() {
    local code=$?
    set +e
    [ "$code" = 0 ] && [ "$FAILED" -gt 0 ] && code=1
    if [ "$STACK_UP" = 1 ]; then
        if [ "$code" != 0 ]; then
            printf '\n--- compose ps -a ---\n'
            compose ps -a
            printf '%s\n' "--- compose logs (last 60 lines per service) ---"
            compose logs --no-color --tail 60 2>&1 | tail -n 400
        fi
        step "docker compose down -v"
        compose --profile simulator down -v --remove-orphans >"$WORK/down.log" 2>&1 ||
            tail_of "$WORK/down.log"
        local left
        left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
            docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"
            docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
        if [ -n "$left" ]; then
            fail "left behind by the project: $(echo "$left" | tr '\n' ' ')"
            code=1
        else
            ok "no container, network or volume of project $PROJECT is left"
        fi
        # images an earlier build of this project replaced (the current ones stay cached)
        docker image prune -f --filter "label=com.docker.compose.project=$PROJECT" >/dev/null
        info "disk: $(docker system df --format '{{.Type}} {{.Size}} ({{.Reclaimable}} reclaimable)' | paste -sd ';' | sed 's/;/; /g')"
    fi
    if [ -n "$DOCKERD_PID" ]; then
        step "stop the dockerd this run started (pid $DOCKERD_PID)"
        stop_dockerd
    fi
    end_step
    printf '\n==> [%s] steps\n' "$(elapsed)"
    printf '    %s\n' "${SUMMARY[@]}"
    if [ "$code" = 0 ]; then
        rm -rf "$WORK"
        printf '\ncompose smoke: all checks passed in %s\n' "$(elapsed | tr -d ' ')"
    else
        printf '\ncompose smoke: FAILED (%s failed check(s)); logs kept in %s\n' "$FAILED" "$WORK"
    fi
    exit "$code"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---- 1. the engine -----------------------------------------------------------------------

apt_install() {
    local out=$WORK/apt.log
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >"$out" 2>&1; then
        apt-get update -o DPkg::Lock::Timeout=300 >>"$out" 2>&1 || true
        apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >>"$out" 2>&1 ||
            { tail_of "$out"; die "apt-get install $*"; }
    fi
}

# Compose v2 and buildx are packaged in trixie only: fetch just their .debs with a
# trixie source that exists for this command alone (its own lists and cache), and
# install them with dpkg. They depend on nothing but libc6 (>= 2.34); bookworm's is
# 2.36, so no system package changes.
install_compose_plugins() {
    local dir=$WORK/trixie opts
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources" "$dir/debs"
    chmod -R a+rX "$dir"
    cat >"$dir/sources/trixie.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$dir/sources"
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
        -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update >"$WORK/trixie.log" 2>&1 || { tail_of "$WORK/trixie.log"; die "apt-get update (trixie)"; }
    (cd "$dir/debs" && apt-get "${opts[@]}" download docker-compose docker-buildx) >>"$WORK/trixie.log" 2>&1 ||
        { tail_of "$WORK/trixie.log"; die "apt-get download docker-compose docker-buildx (trixie)"; }
    dpkg -i "$dir"/debs/*.deb >>"$WORK/trixie.log" 2>&1 || { tail_of "$WORK/trixie.log"; die "dpkg -i"; }
    info "installed $(cd "$dir/debs" && printf '%s ' ./*.deb)"
}

iptables_snapshot() { iptables-save 2>/dev/null || true; }

start_dockerd() {
    IP_FORWARD_BEFORE=$(sysctl -n net.ipv4.ip_forward 2>/dev/null || echo "")
    FORWARD_POLICY_BEFORE=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3 }')
    DOCKER_CHAINS_BEFORE=$(iptables_snapshot | grep -c '^:DOCKER' || true)
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local _
    for _ in $(seq 1 240); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail_of "$WORK/dockerd.log"; DOCKERD_PID=""; die "dockerd exited"; }
        sleep 0.25
    done
    docker info >/dev/null 2>&1 || { tail_of "$WORK/dockerd.log"; die "dockerd did not answer within 60 s"; }
    info "dockerd pid $DOCKERD_PID answers: $(docker info -f 'server {{.ServerVersion}}, {{.Driver}}, cgroup {{.CgroupDriver}}')"
}

stop_dockerd() {
    local _
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 120); do
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
        fail "dockerd did not stop within 30 s of SIGTERM: SIGKILL"
        kill -KILL "$DOCKERD_PID" 2>/dev/null
    fi
    wait "$DOCKERD_PID" 2>/dev/null
    ok "dockerd stopped"
    DOCKERD_PID=""
    # dockerd leaves its iptables chains, the rules that jump to them and docker0
    if [ "${DOCKER_CHAINS_BEFORE:-0}" = 0 ] && command -v iptables >/dev/null; then
        local table rule chain
        for table in filter nat; do
            iptables -t "$table" -S 2>/dev/null |
                grep -E '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ' |
                grep -E 'DOCKER|docker0|br-[0-9a-f]{12}' |
                while read -r rule; do
                    eval "iptables -t $table -D ${rule#-A }" || true
                done
            for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do
                iptables -t "$table" -F "$chain"
            done
            for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do
                iptables -t "$table" -X "$chain"
            done
        done
        [ -n "${FORWARD_POLICY_BEFORE:-}" ] && iptables -P FORWARD "$FORWARD_POLICY_BEFORE"
        [ -z "${FORWARD_POLICY_BEFORE:-}" ] && iptables -P FORWARD ACCEPT
        if iptables_snapshot | grep -qE 'DOCKER|docker0'; then
            fail "iptables still mention docker: $(iptables_snapshot | grep -E 'DOCKER|docker0' | head -3 | paste -sd ' ')"
        else
            ok "iptables: docker's chains and rules removed (FORWARD policy ${FORWARD_POLICY_BEFORE:-ACCEPT})"
        fi
    fi
    if ip link show docker0 >/dev/null 2>&1; then
        ip link delete docker0 && ok "docker0 bridge removed"
    fi
    if [ -n "${IP_FORWARD_BEFORE:-}" ] && [ "$(sysctl -n net.ipv4.ip_forward)" != "$IP_FORWARD_BEFORE" ]; then
        sysctl -qw "net.ipv4.ip_forward=$IP_FORWARD_BEFORE" && ok "net.ipv4.ip_forward back to $IP_FORWARD_BEFORE"
    fi
}

# One smoke run at a time on a machine: they share the engine (and the one that
# started dockerd stops it).
LOCK=/run/lock/trustship-compose-smoke.lock
[ -d /run/lock ] || LOCK=/tmp/trustship-compose-smoke.lock
exec 9>"$LOCK"
if ! flock -n 9; then
    info "another compose smoke run holds $LOCK: waiting for it"
    flock -w 1800 9 || die "waited 30 min for $LOCK"
fi

step "Docker engine"
if docker info >/dev/null 2>&1; then
    info "using the running engine: $(docker info -f 'server {{.ServerVersion}}, {{.Driver}}') (it is left running)"
else
    [ "$(id -u)" = 0 ] || die "no Docker engine answers (docker info) and only root may install or start one"
    if ! command -v dockerd >/dev/null; then
        info "installing Debian's docker.io"
        apt_install docker.io
    fi
    command -v docker >/dev/null || apt_install docker.io
    start_dockerd
fi
if ! docker compose version >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "docker compose (v2) is missing; install the Compose plugin"
    info "installing the Compose v2 and buildx CLI plugins (Debian trixie packages)"
    install_compose_plugins
fi
info "$(docker compose version), client $(docker version -f '{{.Client.Version}}' 2>/dev/null)"

# ---- 2. images -----------------------------------------------------------------------

if [ "$OFFICIAL" = 1 ]; then
    step "images: the official ones (docker-compose.yml's defaults)"
else
    step "images: local stand-ins (scripts/compose_standins.sh)"
    scripts/compose_standins.sh >"$WORK/standins.env" || die "scripts/compose_standins.sh"
    # shellcheck disable=SC1091
    source "$WORK/standins.env"
    info "ANVIL_IMAGE=$ANVIL_IMAGE MOSQUITTO_IMAGE=$MOSQUITTO_IMAGE POSTGRES_IMAGE=$POSTGRES_IMAGE PYTHON_IMAGE=$PYTHON_IMAGE"
    info "EXTRA_CA_CERTS: $(printf '%s' "$EXTRA_CA_CERTS" | grep -c 'BEGIN CERTIFICATE' || true) certificate(s)"
fi

# The simulator's image too (it has a profile, so `up` does not build it): the first
# `docker compose run` would otherwise build it and print the build log on stdout, into
# the replay's JSON.
step "docker compose --profile simulator build"
if ! docker compose -p "$PROJECT" --profile simulator build >"$WORK/build.log" 2>&1; then
    tail_of "$WORK/build.log" 60
    die "docker compose build"
fi
info "$(docker image inspect -f '{{.Size}}' "$PROJECT-trustship" 2>/dev/null |
    awk '{ printf "the TrustShip image: %d MB", $1 / 1e6 }')"

# ---- 3. up ---------------------------------------------------------------------------

step "docker compose up -d --build --wait"
read -r p1 p2 p3 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("", 0))
print(*(s.getsockname()[1] for s in socks))')
export ANVIL_HOST_PORT=${ANVIL_HOST_PORT:-$p1} MQTT_HOST_PORT=${MQTT_HOST_PORT:-$p2} API_HOST_PORT=${API_HOST_PORT:-$p3}
API=http://127.0.0.1:$API_HOST_PORT
info "project $PROJECT; host ports: anvil $ANVIL_HOST_PORT, mosquitto $MQTT_HOST_PORT, API $API_HOST_PORT"
compose --profile simulator down -v --remove-orphans >/dev/null 2>&1 || true  # a killed run's
STACK_UP=1
if ! compose up -d --build --wait >"$WORK/up.log" 2>&1; then
    tail_of "$WORK/up.log" 60
    die "docker compose up -d --build --wait"
fi
compose ps --format '{{.Service}}: {{.Status}}' | sed 's/^/    /'

# ---- 4. checks -------------------------------------------------------------------------

# What the checks read from the API (published port, dev keys): api health|stored|devices [ORDER]
cat >"$WORK/api.py" <<'PY'
import json, sys, urllib.request

base, what, arg = sys.argv[1], sys.argv[2], sys.argv[3:]


def get(path):
    req = urllib.request.Request(base + path, headers={"X-API-Key": "dev-buyer"})
    return json.load(urllib.request.urlopen(req, timeout=10))


try:
    if what == "health":
        r = get("/health")
        parts = {name: c["status"] for name, c in r["components"].items()}
        good = r["status"] == "ok" and parts == {
            "database": "ok", "chain": "ok", "broker": "ok", "indexer": "ok"
        }
        print("ok" if good else "not-ok", json.dumps(r))
    elif what == "stored":  # readings the oracle stored for an order, all its devices
        print(sum(d["reading_count"] for d in get(f"/orders/{arg[0]}/devices")["data"]))
    elif what == "devices":
        print("; ".join(
            f"{d['device'][:10]}… {d['reading_count']} readings, last seq {d['last_seq']}"
            for d in get(f"/orders/{arg[0]}/devices")["data"]
        ))
except Exception as exc:  # the restart check polls a server that may be down
    print(f"error: {type(exc).__name__}: {exc}")
    sys.exit(1)
PY
api() { python3 "$WORK/api.py" "$API" "$@"; }

step "GET /health: ok, with database, chain, broker and indexer"
health=$(api health) || true
info "${health#* }"
if [ "${health%% *}" = ok ]; then ok "/health: status ok; database, chain and broker ok"; else fail "/health: $health"; fi

step "the web dashboard: the page at / and its browser libraries from the image (docs/dashboard.md)"
dashboard_ok=1
for path in / /web/app.js /vendor/uPlot.esm.js /vendor/uPlot.min.css /vendor/countries-110m.json; do
    code=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).status)' "$API$path" 2>&1 | tail -1)
    [ "$code" = 200 ] || { dashboard_ok=0; info "$path: $code"; }
done
if [ "$dashboard_ok" = 1 ]; then ok "dashboard: /, /web/app.js and the vendor files answer 200"; else fail "dashboard files missing from the image"; fi

step "the scenario catalogue through the API: docker compose run simulator replay ... --json --speed max"
catalogue=(scenarios/*.yaml)
info "${#catalogue[@]} scenarios; $RESTART_SCENARIO once more in the restart check below"
rc=0
timeout "$REPLAY_TIMEOUT_S" docker compose -p "$PROJECT" --profile simulator run --rm -T simulator \
    replay "${catalogue[@]}" --json --speed max >"$WORK/catalogue.json" 2>"$WORK/catalogue.log" || rc=$?
python3 - "$WORK/catalogue.json" "$rc" "${catalogue[@]}" <<'EOF' || fail "the catalogue replay (exit $rc)"
import json, sys
path, rc, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
try:
    summary = json.load(open(path))
except ValueError:
    print(f"    FAIL no JSON summary (replay exit {rc})")
    sys.exit(1)
bad = 0
for s in summary["scenarios"]:
    orders = ", ".join(
        f"order {o['order_id']} {o['state']} buyer {o['buyer']} supplier {o['supplier']}"
        f" breach {o['breach']} late {o['late_s']}"
        for o in s["orders"][:2]
    ) + (f", … {len(s['orders'])} orders" if len(s["orders"]) > 2 else "")
    good = s["passed"] and s["orders"] and all(o["passed"] for o in s["orders"])
    bad += not good
    print(f"    {'ok  ' if good else 'FAIL'} {s['name']}: {s['readings_published']} readings, "
          f"{s['seconds']:.0f} s; {orders}" + (f"; error {s['error']}" if s["error"] else ""))
seen = [s["file"] for s in summary["scenarios"]]
if seen != files:
    print(f"    FAIL replayed {seen}, expected {files}")
    bad += 1
sys.exit(1 if bad or rc or not summary["passed"] else 0)
EOF
[ "$rc" = 0 ] || tail_of "$WORK/catalogue.log" 30

step "the broker: anonymous and spoofing clients refused (scripts/compose_checks.py)"
if ! simulator --no-deps -v "$REPO/scripts/compose_checks.py:/app/compose_checks.py:ro" \
    --entrypoint python simulator compose_checks.py 2>"$WORK/broker.log"; then
    tail_of "$WORK/broker.log" 20
    fail "broker checks"
fi
auth=$(compose exec -T mosquitto stat -c '%u:%g %a %n' /mosquitto/auth /mosquitto/auth/dynamic-security.json | paste -sd ';')
owner=${MOSQUITTO_UID:-1883}:${MOSQUITTO_GID:-1883}
if [ "$auth" = "$owner 700 /mosquitto/auth;$owner 600 /mosquitto/auth/dynamic-security.json" ]; then
    ok "the broker's files are its own and private: ${auth//;/; }"
else
    fail "the auth volume in the broker: ${auth//;/; } (expected $owner, 700 and 600)"
fi

step "restart: SIGKILL the trustship container mid-telemetry, start it again, nothing lost"
scenario=scenarios/$RESTART_SCENARIO.yaml
timeout "$REPLAY_TIMEOUT_S" docker compose -p "$PROJECT" --profile simulator run --rm -T --no-deps \
    -e COLUMNS=200 simulator replay "$scenario" --json --speed "$RESTART_SPEED" \
    >"$WORK/restart.json" 2>"$WORK/restart.log" &
replay_pid=$!
order="" stored_before=0 deadline=$((SECONDS + 180))
while [ -z "$order" ] && [ $SECONDS -lt $deadline ] && kill -0 "$replay_pid" 2>/dev/null; do
    sleep 0.2
    order=$(sed -n 's/.*order \([0-9][0-9]*\): shipped over the API.*/\1/p' "$WORK/restart.log" | head -n 1)
done
[ -n "$order" ] || { tail_of "$WORK/restart.log"; die "the replay of $scenario shipped no order"; }
info "replaying $scenario at speed $RESTART_SPEED: order $order shipped"
while [ $SECONDS -lt $deadline ] && kill -0 "$replay_pid" 2>/dev/null; do
    stored_before=$(api stored "$order") || stored_before=0
    [ "$stored_before" -ge "$RESTART_AFTER" ] && break
    sleep 0.2
done
if kill -0 "$replay_pid" 2>/dev/null && [ "$stored_before" -ge "$RESTART_AFTER" ]; then
    kill_t=$SECONDS
    compose kill -s SIGKILL trustship >/dev/null 2>&1
    info "trustship killed (SIGKILL) with $stored_before readings of order $order stored; the devices keep publishing"
    if compose up -d --no-deps --wait trustship >"$WORK/restart-up.log" 2>&1; then
        info "trustship healthy again $((SECONDS - kill_t)) s after the kill"
    else
        tail_of "$WORK/restart-up.log"
        fail "trustship did not come back healthy"
    fi
else
    fail "the telemetry of order $order ended with $stored_before readings stored: no restart mid-telemetry"
fi
rc=0
wait "$replay_pid" || rc=$?
published=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["scenarios"][0]["readings_published"])' "$WORK/restart.json" 2>/dev/null) || published="?"
passed=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["passed"], "order {order_id} {state}, buyer {buyer} supplier {supplier} (expected {expected_buyer}"
      " / {expected_supplier}), breach {breach}, late {late_s} s".format(**s["scenarios"][0]["orders"][0]))
' "$WORK/restart.json" 2>/dev/null) || passed="no summary"
stored_after=$(api stored "$order") || stored_after="?"
per_device=$(api devices "$order") || per_device="?"
info "published $published readings; stored $stored_after ($per_device)"
if [ "$rc" = 0 ] && [ "${passed%% *}" = True ]; then
    ok "$RESTART_SCENARIO settled as expected after the restart: ${passed#* }"
else
    tail_of "$WORK/restart.log" 30
    fail "$RESTART_SCENARIO after the restart (replay exit $rc): $passed"
fi
if [ "$stored_after" = "$published" ] && [ "$stored_before" -lt "$published" ]; then
    ok "every published reading stored: $stored_after of $published ($((published - stored_before)) arrived after the kill)"
else
    fail "stored $stored_after of $published published readings ($stored_before before the kill)"
fi

step "docker compose stop trustship: SIGTERM, exit 0, no traceback"
compose stop trustship >/dev/null 2>&1
container=$(compose ps -aq trustship)
code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
compose logs --no-color trustship >"$WORK/trustship.log" 2>&1
if [ "$code" = 0 ] && grep -q "oracle stopped" "$WORK/trustship.log" &&
    ! grep -q "Traceback" "$WORK/trustship.log"; then
    ok "trustship exited 0 after 'oracle stopped'; no traceback in its log"
else
    tail_of "$WORK/trustship.log" 30
    fail "trustship on SIGTERM: exit $code (its log: oracle stopped? traceback?)"
fi

end_step
[ "$FAILED" = 0 ] || exit 1
