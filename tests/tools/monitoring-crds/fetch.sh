#!/usr/bin/env bash
# Fetches the ServiceMonitor and PrometheusRule CRDs of the prometheus-operator
# release pinned in tests/tools/monitoring-crds/go.mod (checked against go.sum)
# from its Go module zip into
#   .cache/monitoring-crds/prometheus-operator-<version>/
# (relative to the repository root), so the manifest tests can install them on
# the test control plane. Reused while both files are there.
#
# Progress goes to stderr; the last line on stdout is the directory holding the
# CRD files, so callers can do:  dir="$(bash tests/tools/monitoring-crds/fetch.sh | tail -n 1)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

tool=monitoring-crds
source "$root/tests/tools/lib.sh"

module=github.com/prometheus-operator/prometheus-operator
version="$(mod_version "$module")"
[[ -n "$version" ]] || die "cannot read the $module version from $here/go.mod"

files=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
cache="$root/.cache/monitoring-crds/prometheus-operator-$version"

have_files() {
    local f
    for f in "${files[@]}"; do [[ -s "$cache/$f" ]] || return 1; done
}

if have_files; then
    log "reusing $cache"
    echo "$cache"
    exit 0
fi

command -v go >/dev/null 2>&1 \
    || die "the Go toolchain ('go') is not on PATH; install Go 1.26 or newer (https://go.dev/dl/) to fetch the prometheus-operator CRDs for the tests"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if have_files; then
    log "reusing $cache (fetched by a concurrent run)"
    echo "$cache"
    exit 0
fi

log "fetching $module $version"
# In this module, `go mod download` takes the version from go.mod and checks the zip against go.sum.
json="$(cd "$here" && go mod download -json "$module")" || die "go mod download $module failed: $json"
dir="$(printf '%s\n' "$json" | awk -F'"' '$2 == "Dir" { print $4; exit }')"
[[ -n "$dir" && -d "$dir/example/prometheus-operator-crd" ]] \
    || die "the $module $version module has no example/prometheus-operator-crd (go mod download said: $json)"

for f in "${files[@]}"; do
    [[ -s "$dir/example/prometheus-operator-crd/$f" ]] || die "$module $version has no example/prometheus-operator-crd/$f"
    # The module cache is read-only; the copy is written next to it and renamed when complete.
    cp "$dir/example/prometheus-operator-crd/$f" "$cache/$f.partial"
    chmod u+w "$cache/$f.partial"
    mv "$cache/$f.partial" "$cache/$f"
done
log "copied ${files[*]} into $cache"
echo "$cache"
