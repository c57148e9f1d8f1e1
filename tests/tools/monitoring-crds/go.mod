// Pins the prometheus-operator release whose ServiceMonitor and PrometheusRule
// CRDs the manifest tests install (only the CRD files are used, from the module
// zip). Used only by tests/tools/monitoring-crds/fetch.sh; nothing here ships.
module taskreaper.test/monitoring-crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
