# Shared by bench/load.sh and bench/instructions.sh: the binaries they compare, the tools they
# install when missing, and pullthrough's configuration for a benchmark. Sourced, not run.

BIN=${PT_BIN:-target/release/pullthrough}
FLOOR=target/release/examples/floor

log() { printf '%s\n' "$*" >&2; }

# Installs Debian package $2 when command $1 is missing.
need() { # command package
    if ! command -v "$1" >/dev/null; then
        log "installing $2"
        apt-get update >&2 && apt-get install -y "$2" >&2
    fi
}

build_binaries() {
    log "building release binaries"
    nice -n 10 cargo build --locked --release --bin pullthrough --example floor >&2
}

# Rules are not read from ECR (no AWS here): they stay unknown and the map is trusted, which is
# the default behaviour while the rules are unknown.
write_config() { # file
    cat >"$1" <<'YAML'
accountId: "123456789012"
region: eu-west-1
ruleCheck:
  enabled: false
YAML
}
