#!/usr/bin/env bash
# Every test, on a fresh clone: installs what the tests need and this machine lacks, then runs
# `cargo test` (arguments go to it). Debian's chromium (the report's browser test), postgresql
# (a throwaway cluster per test run, tests/support/pg.rs), and nodejs and python3 (the README's
# webhook verification examples, run as written) come from apt when run as root;
# open-source Rasa, whose own code writes the Rasa tests' stores (tests/rasa_real.rs), goes into a
# virtualenv under target/, made once and kept while its recipe is unchanged.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# The README's webhook verification examples are run as written (tests/destinations.rs).
command -v node >/dev/null || missing+=(nodejs)
command -v python3 >/dev/null || missing+=(python3)
# PgBouncer in transaction mode between two "hosts" and a PostgreSQL state (tests/two_hosts.rs).
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: not root, so not installing ${missing[*]}: the tests that need them say so and pass" >&2
  fi
fi
tests/rasa/install.sh

exec cargo test "$@"
