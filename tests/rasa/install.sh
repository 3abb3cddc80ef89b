#!/usr/bin/env bash
# Installs open-source Rasa (Apache-2.0) into target/rasa-venv, so the Rasa source's tests
# (tests/rasa_real.rs) write their stores with Rasa's own tracker-store code. The recipe is the one
# in the lead's RUNTIMES notes: rasa without its declared dependencies (it declares Python < 3.11
# and TensorFlow; its tracker store needs neither), then its own pins for what the store imports.
# Cached: a stamp holds the recipe's hash, and nothing runs while it matches. Quiet on success;
# pip's output goes to target/rasa-venv.log, printed only when pip fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}
venv=target/rasa-venv
log=target/rasa-venv.log
rasa=(rasa==3.6.21)
pins=(
  'SQLAlchemy>=1.4,<1.5' 'psycopg2-binary>=2.8.2,<2.10' 'numpy>=1.19.2,<1.25' 'scipy>=1.10,<1.11'
  'sanic>=21.12,<21.13' 'sanic-routing>=0.7.2,<0.8' 'websockets>=10,<11' 'aiohttp>=3.9,<3.10'
  'aio-pika>=6.7.1,<8.2.4' 'boto3>=1.26.136,<2' 'pymongo>=3.8,<4.4' 'dnspython==2.3.0'
  'python-dateutil>=2.8,<2.9' 'attrs>=19.3,<22.2' 'packaging>=20,<21' 'jsonschema>=3.2,<4.18'
  'jsonpickle>=1.3,<3.1' 'pykwalify>=1.7,<1.9' 'ruamel.yaml>=0.16.5,<0.17.22' 'portalocker>=2.7,<3'
  'pluggy>=1,<2' 'structlog>=23.1,<24' 'randomname>=0.1.5,<0.2' 'requests>=2.23,<3'
  'terminaltables>=3.1,<3.2' 'tarsafe>=0.0.3,<0.0.5' 'typing-extensions>=4.1.1,<5' 'ujson>=1.35,<6'
)

stamp="$venv/.recipe"
recipe=$(printf '%s\n' "$("$python" --version 2>&1)" "${rasa[@]}" "${pins[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

rm -rf "$venv"
mkdir -p target
if ! {
  "$python" -m venv "$venv" &&
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
      --ignore-requires-python --no-deps "${rasa[@]}" &&
    MULTIDICT_NO_EXTENSIONS=1 "$venv/bin/python" -m pip install --disable-pip-version-check \
      --no-input -q "${pins[@]}" &&
    "$venv/bin/python" -c 'from rasa.core.tracker_store import SQLTrackerStore'
} >"$log" 2>&1; then
  echo "tests/rasa/install.sh: installing Rasa into $venv failed:" >&2
  cat "$log" >&2
  rm -rf "$venv"
  exit 1
fi
echo "$recipe" >"$stamp"
