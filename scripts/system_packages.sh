#!/usr/bin/env bash
# The Debian packages the test suite runs as real peers: the mosquitto broker and the
# stock clients an outside tester uses (mosquitto_sub/mosquitto_pub from
# mosquitto-clients), and Debian's chromium, the headless browser the dashboard's tests
# drive with Playwright. Installs what is missing when run as root; otherwise says what
# to install. Nothing happens when every command is already there.
set -euo pipefail

declare -A package_of=(
    [mosquitto]=mosquitto
    [mosquitto_sub]=mosquitto-clients
    [mosquitto_pub]=mosquitto-clients
    [chromium]=chromium
)

missing=()
for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${package_of[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" != 0 ]; then
    echo "system_packages: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "system_packages: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
apt-get install "${opts[@]}" "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null && apt-get install "${opts[@]}" "${missing[@]}"; }
