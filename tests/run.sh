#!/usr/bin/env bash
# The project's single test command:  bash tests/run.sh [cargo test arguments...]
#
# Each step is a section; the time of every section is printed at the end
# (also when a section fails). Add new steps as new sections.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# --- helpers ---------------------------------------------------------------

now_ms() { date +%s%3N; }

timings=()
section=""
section_t0=0
run_t0="$(now_ms)"

section() {
    section_end
    section="$1"
    section_t0="$(now_ms)"
    printf '\n==> %s\n' "$section" >&2
}

section_end() {
    if [[ -n "$section" ]]; then
        local ms=$(( $(now_ms) - section_t0 ))
        timings+=("$(printf '%8d.%03ds  %s' $((ms / 1000)) $((ms % 1000)) "$section")")
        section=""
    fi
}

print_timings() {
    local status=$?
    if [[ -n "$section" ]]; then
        section="$section (FAILED)"
    fi
    section_end
    local ms=$(( $(now_ms) - run_t0 ))
    {
        printf '\n==> timings\n'
        printf '%s\n' "${timings[@]}"
        printf '%8d.%03ds  total\n' $((ms / 1000)) $((ms % 1000))
    } >&2
    exit "$status"
}
trap print_timings EXIT

need() {
    command -v "$1" >/dev/null 2>&1 || {
        printf 'tests/run.sh: error: `%s` is not on PATH. %s\n' "$1" "$2" >&2
        exit 1
    }
}

# --- prerequisites -----------------------------------------------------------

section "prerequisites"
need go "Install the Go toolchain (1.26 or newer): it builds kube-apiserver and etcd for the integration tests."
need cargo "Install the Rust toolchain (rustup, cargo)."
need kubectl "Install kubectl: the tests drive the test control plane with it."
need openssl "Install OpenSSL (package openssl): the test control plane's certificates and keys are made with it."
need setpriv "Install util-linux: the tests start kube-apiserver, etcd and taskreaper under \`setpriv --pdeathsig KILL\` so they die with the test binary."
need flock "Install util-linux: tests/control-plane/build.sh and tests/tools/*/*.sh take a lock with \`flock\` so concurrent runs build once."

# --- Kubernetes control plane (kube-apiserver + etcd) ------------------------

section "control plane build (tests/control-plane/build.sh)"
bin="$(bash tests/control-plane/build.sh | tail -n 1)"
[[ -x "$bin/kube-apiserver" && -x "$bin/etcd" ]] || {
    printf 'tests/run.sh: error: tests/control-plane/build.sh did not produce binaries in %s\n' "$bin" >&2
    exit 1
}
export TASKREAPER_CONTROL_PLANE_BIN="$bin"
printf 'TASKREAPER_CONTROL_PLANE_BIN=%s\n' "$TASKREAPER_CONTROL_PLANE_BIN" >&2

# --- helm and the prometheus-operator CRDs (manifest tests) ------------------

section "helm build (tests/tools/helm/build.sh)"
TASKREAPER_HELM="$(bash tests/tools/helm/build.sh | tail -n 1)"
[[ -x "$TASKREAPER_HELM" ]] || {
    printf 'tests/run.sh: error: tests/tools/helm/build.sh did not produce %s\n' "$TASKREAPER_HELM" >&2
    exit 1
}
export TASKREAPER_HELM
printf 'TASKREAPER_HELM=%s\n' "$TASKREAPER_HELM" >&2

section "monitoring CRDs (tests/tools/monitoring-crds/fetch.sh)"
TASKREAPER_MONITORING_CRDS="$(bash tests/tools/monitoring-crds/fetch.sh | tail -n 1)"
export TASKREAPER_MONITORING_CRDS
printf 'TASKREAPER_MONITORING_CRDS=%s\n' "$TASKREAPER_MONITORING_CRDS" >&2

# --- the official Huawei Cloud Python SDK (conformance referee) --------------

section "python SDK venv (tests/sdk/requirements.txt)"
need python3 "Install Python 3.9 or newer: the official Huawei Cloud SDK checks the signer and the emulator."
TASKREAPER_PYTHON="$(bash tests/sdk/venv.sh | tail -n 1)"
export TASKREAPER_PYTHON

# --- Rust tests --------------------------------------------------------------

section "cargo test"
# Without arguments: every test, all failures reported, and the counts the tests print shown.
if [[ $# -eq 0 ]]; then
    set -- --no-fail-fast -- --show-output
fi
cargo test "$@"

section_end
