# Shared by the scripts that build or fetch the tests' tools from Go modules. Source it after
# setting `tool` (the name messages start with) and `here` (the folder holding the go.mod).

log() { printf '%s: %s\n' "$tool" "$*" >&2; }
die() { printf '%s: error: %s\n' "$tool" "$*" >&2; exit 1; }

# The version $here/go.mod pins for a module, from a `require` block line or a one-line `require`.
mod_version() {
    awk -v m="$1" '($1 == m && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$here/go.mod"
}
