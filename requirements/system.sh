#!/usr/bin/env bash
# The system packages `make test` needs besides Python's: PostgreSQL's server binaries (the
# suite runs the records layer against a real Postgres) and libnuma (vLLM's CPU build loads
# it), Chromium (the dashboard's browser tests drive it through Playwright) and Node.js with
# npm (the dashboard's freshness test rebuilds its committed assets from ui/). On Debian or Ubuntu as root they are installed when missing; elsewhere this says
# what to install and the tests that need them fail naming it.
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
if ! ldconfig -p 2>/dev/null | grep -q "libnuma\.so\.1"; then
  missing+=(libnuma1)
fi
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "warning: install these system packages for the full test suite: ${missing[*]}" >&2
fi
