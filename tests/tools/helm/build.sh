#!/usr/bin/env bash
# Builds helm from the Go module pinned in tests/tools/helm/go.mod into
#   .cache/helm/<version>/bin/helm
# (relative to the repository root), for the manifest tests' `helm template`.
# A finished build is reused as long as the binary is there; only Go module
# downloads are needed.
#
# Progress goes to stderr; the last line on stdout is the helm binary, so
# callers can do:  helm="$(bash tests/tools/helm/build.sh | tail -n 1)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

tool=helm
source "$root/tests/tools/lib.sh"

version="$(mod_version helm.sh/helm/v3)"
client_go="$(mod_version k8s.io/client-go)"
[[ -n "$version" && -n "$client_go" ]] \
    || die "cannot read the helm.sh/helm/v3 and k8s.io/client-go versions from $here/go.mod"

cache="$root/.cache/helm/$version"
helm="$cache/bin/helm"

if [[ -x "$helm" ]]; then
    log "reusing $helm"
    echo "$helm"
    exit 0
fi

command -v go >/dev/null 2>&1 \
    || die "the Go toolchain ('go') is not on PATH; install Go 1.26 or newer (https://go.dev/dl/) to build helm for the tests"

mkdir -p "$cache"
# One build at a time per version (e.g. two test runs started together).
exec 9>"$cache/.lock"
flock 9
if [[ -x "$helm" ]]; then
    log "reusing $helm (built by a concurrent run)"
    echo "$helm"
    exit 0
fi

log "building helm $version with $(go version) (about 3.5 minutes of CPU with empty Go caches)"
started=$SECONDS

# The stamps helm's Makefile sets: its own version, and the Kubernetes version
# `helm template` reports as .Capabilities.KubeVersion (client-go v0.X.Y is Kubernetes 1.X).
k8s_minor="${client_go#v0.}"
k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

staging="$cache/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"

(
    cd "$here"
    export CGO_ENABLED=0
    export GOFLAGS="-mod=mod -buildvcs=false"
    go build -trimpath -ldflags "$ldflags" -o "$staging/helm" helm.sh/helm/v3/cmd/helm
) || die "go build failed (see the messages above)"

"$staging/helm" version >&2 || die "the built helm does not run"

rm -rf "$cache/bin"
mv "$staging" "$cache/bin"
log "built in $((SECONDS - started))s into $cache/bin"
echo "$helm"
