#!/usr/bin/env bash
# Sets up a fresh Debian machine (Python 3.11 + apt) for drsynth: system packages when missing, then a
# virtual environment at .venv with drsynth and every extra installed (so .venv/bin/drsynth exists).
# Idempotent: a second run only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# --- System packages (EGL/Mesa for headless rendering, Pushgateway + Prometheus for the metrics tests) --
# prometheus: ~22 MB to download with its dependencies (~100 MB installed); the scrape-config test uses it.
# On a systemd host Debian also starts its service on :9090 (`systemctl disable --now prometheus` if unwanted).
DEB_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 prometheus-pushgateway prometheus)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=("python3-venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Virtual environment ------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# Reinstall only when the project's dependency files changed since the last successful setup.
stamp="$VENV/.drsynth-setup"
want=$(cat pyproject.toml setup.py constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/drsynth" ]; then
  exit 0
fi
echo "setup: installing torch (first, pinned) and drsynth into $VENV"
"$VENV/bin/pip" install -q -c constraints.txt torch torchvision
"$VENV/bin/pip" install -q -c constraints.txt -e ".[pipeline,serve,dev]"
echo "$want" >"$stamp"
echo "setup: done ($("$VENV/bin/drsynth" --version))"
