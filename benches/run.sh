#!/usr/bin/env bash
# The benchmark's one command:  bash benches/run.sh [benches/bench.py arguments...]
#
# Builds the release binary and, through tests/sdk/venv.sh (as tests/run.sh does), the official SDK's
# venv at .venv when absent or stale, then runs
# benches/bench.py with the venv's python. `bash benches/run.sh --help` lists the scenarios and knobs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release --quiet

python="$(bash tests/sdk/venv.sh | tail -n 1)"

exec "$python" benches/bench.py --binary "$root/target/release/taskreaper" "$@"
