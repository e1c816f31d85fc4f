#!/usr/bin/env bash
# Installs the system packages Harbormaster needs, when they are missing.
#   install-deps.sh run    the PostgreSQL server programs (for the embedded database)
#   install-deps.sh test   the above, plus Chromium, chromedriver, busybox-static and sqlx-cli
set -euo pipefail

what=${1:-run}
SQLX_CLI_VERSION=0.8.6

have_postgres() {
  command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
if [ "$what" = run ] && [ -n "${DATABASE_URL:-}" ]; then
  :
elif ! have_postgres; then
  missing+=(postgresql)
fi
if [ "$what" = test ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx wget || missing+=(busybox-static)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
  else
    echo "Harbormaster needs these Debian packages: ${missing[*]}" >&2
    echo "Install them as root:  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$what" = test ]; then
  if ! cargo sqlx --version 2>/dev/null | grep -q " $SQLX_CLI_VERSION"; then
    echo "installing sqlx-cli $SQLX_CLI_VERSION ..." >&2
    cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked --no-default-features --features postgres,rustls >&2
  fi
fi
