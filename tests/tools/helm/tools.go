//go:build tools

// Package tools records the program build.sh compiles (the helm command), so
// that `go mod tidy` keeps its dependencies in go.mod and go.sum.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
