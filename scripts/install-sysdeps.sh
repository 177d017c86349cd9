#!/usr/bin/env bash
# Install the Debian packages the test suite and the demo need, when missing.
# Usage: scripts/install-sysdeps.sh [prometheus] [chromium] [postgresql]   (default: all)
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(prometheus chromium postgresql victoria-metrics)

missing=()
for w in "${want[@]}"; do
  case "$w" in
    prometheus) { command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus) ;;
    chromium)
      command -v chromium >/dev/null || missing+=(chromium)
      command -v chromedriver >/dev/null || missing+=(chromium-driver) ;;
    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql) ;;
    victoria-metrics) command -v victoria-metrics >/dev/null || missing+=(victoria-metrics) ;;
    *) echo "unknown component $w" >&2; exit 2 ;;
  esac
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts services on install; this project starts its own on free ports.
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then service postgresql stop >/dev/null 2>&1 || true; fi
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then service prometheus stop >/dev/null 2>&1 || true; fi
  if [[ " ${missing[*]} " == *" victoria-metrics "* ]]; then service victoria-metrics stop >/dev/null 2>&1 || true; fi
else
  echo "Missing packages: ${missing[*]}." >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
  echo "(or run the stack with 'docker compose up' from docker-compose.yml)." >&2
  exit 1
fi
