#!/usr/bin/env bash
# The one list of Debian packages NoriKV needs to build, test and benchmark.
# Installs only what is missing; does nothing (and needs no network) when all
# of it is present. Called by `make`, `make test` and `make run`.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # fuzzing (libFuzzer) and sanitizers
  clang libclang-rt-14-dev
  # C libraries of the server and engine
  libxxhash-dev liblz4-dev libzstd-dev libyaml-dev libmicrohttpd-dev
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  # engines and systems the benchmarks compare against
  librocksdb-dev libleveldb-dev etcd-server
  # SDK toolchains' helpers (Python virtual environments)
  python3-venv
  # Java SDK build tool (the JDK: below)
  maven
  # tests
  procps curl
  # the dashboard test drives a real headless browser
  chromium
)

# Java SDK: any JDK 11+ will do; Debian's default one only when none is there.
if ! command -v javac >/dev/null 2>&1; then
  PACKAGES+=(default-jdk-headless)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
