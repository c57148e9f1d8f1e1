#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd) from the Go modules
# pinned in tests/control-plane/go.mod, into
#   .cache/control-plane/k8s-<version>-etcd-<version>/bin/
# (relative to the repository root). A finished build is reused as long as
# both binaries are there. Only Go module downloads are needed.
#
# Progress goes to stderr; the last line on stdout is the bin directory, so
# callers can do:  bin="$(bash tests/control-plane/build.sh | tail -n 1)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

tool=control-plane
source "$root/tests/tools/lib.sh"

k8s_version="$(mod_version k8s.io/kubernetes)"
etcd_version="$(mod_version go.etcd.io/etcd/server/v3)"
[[ -n "$k8s_version" && -n "$etcd_version" ]] \
    || die "cannot read the k8s.io/kubernetes and go.etcd.io/etcd/server/v3 versions from $here/go.mod"

cache="$root/.cache/control-plane/k8s-${k8s_version#v}-etcd-${etcd_version#v}"
bin="$cache/bin"

have_binaries() { [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" ]]; }

if have_binaries; then
    log "reusing $bin"
    echo "$bin"
    exit 0
fi

command -v go >/dev/null 2>&1 \
    || die "the Go toolchain ('go') is not on PATH; install Go 1.26 or newer (https://go.dev/dl/) to build kube-apiserver and etcd for the tests"

mkdir -p "$cache"
# One build at a time per version (e.g. two test runs started together).
exec 9>"$cache/.lock"
flock 9
if have_binaries; then
    log "reusing $bin (built by a concurrent run)"
    echo "$bin"
    exit 0
fi

log "building kube-apiserver $k8s_version and etcd $etcd_version with $(go version) (several minutes on a first build)"
started=$SECONDS

# Version stamps that the Kubernetes release build would set (hack/lib/version.sh),
# so /version and `kubectl version` report the real release.
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

staging="$cache/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"

(
    cd "$here"
    export CGO_ENABLED=0
    export GOFLAGS="-mod=mod -buildvcs=false"
    # One `go build` for both programs lets the compiler keep both cores busy.
    # go.etcd.io/etcd/server/v3 is etcd's main package; it is written as
    # "server" (its path element before the /v3 suffix) and renamed below.
    go build -trimpath -ldflags "$ldflags" -o "$staging/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        go.etcd.io/etcd/server/v3
) || die "go build failed (see the messages above)"

mv "$staging/server" "$staging/etcd"
"$staging/etcd" --version >&2 || die "the built etcd does not run"
"$staging/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"

rm -rf "$bin"
mv "$staging" "$bin"
log "built in $((SECONDS - started))s into $bin"
echo "$bin"
