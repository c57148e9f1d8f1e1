#!/usr/bin/env bash
# The benchmark's one command:  bash benches/run.sh [benches/bench.py arguments...]
#
# Builds the release binary and, when absent or stale, the official SDK's venv at .venv (the same venv,
# the same stamp as tests/run.sh, so either script reuses what the other built), then runs
# benches/bench.py with the venv's python. `bash benches/run.sh --help` lists the scenarios and knobs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release --quiet

# As tests/run.sh's "python SDK venv" section: rebuilt only when tests/sdk/requirements.txt changed.
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum tests/sdk/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
    echo "$want" > "$stamp"
fi

exec "$venv/bin/python" benches/bench.py --binary "$root/target/release/taskreaper" "$@"
