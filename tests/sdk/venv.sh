#!/usr/bin/env bash
# Builds the official Huawei Cloud SDK's virtualenv at .venv from tests/sdk/requirements.txt, or
# reuses it while that file is unchanged, and prints the venv's python on the last line.
# Used by tests/run.sh and benches/run.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum tests/sdk/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
    echo "$want" > "$stamp"
else
    printf 'reusing %s\n' "$venv" >&2
fi
printf '%s\n' "$venv/bin/python"
