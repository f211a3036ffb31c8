#!/usr/bin/env bash
# codebox-mcp set-up: makes this machine ready to run the server and its tests.
#   - a Docker engine (Debian/Ubuntu as root: installs docker.io and starts dockerd if none runs)
#   - gVisor's runsc registered as a Docker runtime when it can be installed
#   - npm dependencies and the build (dist/), when missing or stale
# Idempotent and quick when everything is in place. Everything it prints goes to stderr, so
# `scripts/setup.sh && node dist/cli.js` is a valid MCP stdio command (stdout stays protocol-only).
set -euo pipefail
exec 1>&2

cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*"; exit 1; }

engine_up() { docker version >/dev/null 2>&1 || curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = "0" ]; }
have_apt() { command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. gVisor (optional): install and register before the engine starts, so no restart is needed.
register_runsc() {
  local runsc; runsc="$(command -v runsc || true)"
  [ -n "$runsc" ] || return 0
  mkdir -p /etc/docker
  RUNSC="$runsc" node -e '
    const fs = require("fs"); const p = "/etc/docker/daemon.json";
    let cfg = {}; try { cfg = JSON.parse(fs.readFileSync(p, "utf8")); } catch {}
    cfg.runtimes = cfg.runtimes || {};
    // --oci-seccomp: apply our seccomp allowlist inside gVisor too (runsc ignores it otherwise).
    const want = { path: process.env.RUNSC, runtimeArgs: ["--network=none", "--host-uds=open", "--oci-seccomp"] };
    if (JSON.stringify(cfg.runtimes.runsc) === JSON.stringify(want)) process.exit(3);
    cfg.runtimes.runsc = want; fs.writeFileSync(p, JSON.stringify(cfg, null, 2) + "\n");
  ' && return 10 || return 0
}

if is_root && have_apt; then
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io (the Docker engine) from Debian's packages"
    apt_install docker.io || die "apt-get install docker.io failed"
  fi
  # Debian's CPython: the offline Python sandbox image is assembled from these packages.
  if ! dpkg -s python3-minimal libpython3-stdlib >/dev/null 2>&1; then
    say "installing python3-minimal and libpython3-stdlib (CPython for the Python sandbox image)"
    apt_install python3-minimal libpython3-stdlib || say "CPython could not be installed; the python runtime will not build offline"
  fi
  # The Python data stack (numpy, pandas, matplotlib, scipy, openpyxl, Pillow) for the data image
  # (sandbox.pythonPackages "data", the default); PYTHON_DATA_PACKAGES in src/sandbox/docker/rootfs.ts.
  data_pkgs="python3-numpy python3-pandas python3-matplotlib python3-scipy python3-openpyxl python3-pil python3-pip"
  # shellcheck disable=SC2086
  if ! dpkg -s $data_pkgs >/dev/null 2>&1; then
    say "installing the Python data stack from Debian's packages (for the Python sandbox image)"
    # shellcheck disable=SC2086
    apt_install --no-install-recommends $data_pkgs || say "the data stack could not be installed; set sandbox.pythonPackages to \"stdlib\" or the Python image will not build offline"
  fi
  if ! command -v runsc >/dev/null 2>&1; then
    say "installing runsc (gVisor) from Debian's packages"
    apt_install runsc || say "runsc could not be installed; continuing with runc only"
  fi
fi

runsc_changed=0
if is_root; then register_runsc || runsc_changed=$?; fi

if engine_up && [ "$runsc_changed" = 10 ]; then
  say "runsc registered; restarting dockerd to load it"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then systemctl restart docker
  else pkill -x dockerd || true; for _ in $(seq 1 50); do pgrep -x dockerd >/dev/null || break; sleep 0.2; done; fi
fi

if ! engine_up; then
  if ! is_root; then
    die "no Docker engine is running. Start Docker (Docker Desktop, or 'sudo systemctl start docker'), or run this script as root on Debian/Ubuntu."
  fi
  command -v dockerd >/dev/null 2>&1 || die "no dockerd found and no apt-get to install it: install Docker for your system, then run this again."
  say "starting dockerd (log: /var/log/codebox-dockerd.log)"
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then :; else
    nohup setsid dockerd >/var/log/codebox-dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 150); do engine_up && break; sleep 0.2; done
  engine_up || die "dockerd did not come up in 30 s; see /var/log/codebox-dockerd.log"
fi
say "Docker engine is up"

# 2. Node dependencies and the build.
node -e 'const [maj] = process.versions.node.split(".").map(Number); if (maj < 20) { console.error("setup: ERROR: Node 20 or newer is needed, found " + process.version); process.exit(1); }'
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -f dist/cli.js ] || [ -n "$(find src sandbox-image scripts/postbuild.mjs tsconfig.json -newer dist/cli.js -type f 2>/dev/null | head -1)" ]; then
  say "building"
  npm run build --silent
fi
say "ready: node dist/cli.js serves MCP over stdio (the sandbox image is built on first use, or now with: node dist/cli.js image build)"
