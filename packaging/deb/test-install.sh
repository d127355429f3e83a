#!/usr/bin/env bash
# Builds the Debian packages and the tarball, then runs docs/INSTALL.md's Linux steps (its
# blocks marked `install-test NAME`) as written, as root, checking what each step leaves
# behind: the tarball installed and removed; the previous build of both packages installed
# over nothing; the sample configuration refused; central and the agent configured as the
# document says and syncing an event between the installed binaries; the upgrade to this build
# with that data in place; backup; restore; remove (configuration and data kept); purge (gone).
#
#   bash packaging/deb/test-install.sh [PROFILE]
#
# PROFILE is the cargo profile whose binaries are packaged as they are (`cargo deb --no-build`):
# `dev` packages what `cargo test` built (CI), `release` (default) a `cargo build --release`.
# Without systemd running (a container), `systemctl` enables and disables units on disk and
# says what it skips; the daemons are started by this script where the test needs them.
# Run it on a machine you can throw away: it installs and purges tally-agent and tally-central.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
profile=${1:-release}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $profile in
  dev) bin_dir=$target_dir/debug ;;
  *) bin_dir=$target_dir/$profile ;;
esac
started=$(date +%s)

fail() { echo "FAILED: $*" >&2; exit 1; }
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }
step() { printf '\n=== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "run as root: it installs packages"
command -v cargo-deb >/dev/null || fail "cargo-deb is missing (cargo install cargo-deb --locked)"
[ -x "$bin_dir/tally-agent" ] && [ -x "$bin_dir/tally-central" ] ||
  fail "no tally-agent and tally-central in $bin_dir: build them first"

leftovers=(/etc/tally /var/lib/tally-agent /var/lib/tally-central /var/lib/private/tally-agent
  /var/lib/private/tally-central /var/backups/tally /usr/local/bin/tally-agent
  /etc/systemd/system/tally-agent.service)
if dpkg-query -W tally-agent tally-central >/dev/null 2>&1 || ls -d "${leftovers[@]}" >/dev/null 2>&1; then
  [ "${CI:-}" = true ] || fail "Tally is (partly) installed here; this test wants a machine without it"
  dpkg -P tally-agent tally-central >/dev/null 2>&1 || true
  rm -rf "${leftovers[@]}"
fi

work=$(mktemp -d /tmp/tally-install-test.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
previous="$version~prev-1"
step "packages from $bin_dir: a previous build ($previous) and this one ($version-1)"
mkdir -p "$work/prev" "$work/new" "$work/tarball"
for pkg in tally-agent tally-central; do
  (cd "$repo" && cargo deb -p "$pkg" --no-build --fast --profile "$profile" --deb-version "$previous" \
    -o "$work/prev/" 2>&1 | grep -v 'dev profile is not supported\|cargo-deb is for making\|To enable debug symbols\|Cargo also supports custom' || true)
  (cd "$repo" && cargo deb -p "$pkg" --no-build --fast --profile "$profile" -o "$work/new/" 2>&1 |
    grep -v 'dev profile is not supported\|cargo-deb is for making\|To enable debug symbols\|Cargo also supports custom' || true)
done
ls "$work/prev" "$work/new"
for deb in "$work"/prev/*.deb "$work"/new/*.deb; do
  dpkg-deb --info "$deb" >/dev/null || fail "$deb is not a package"
done
bash "$repo/packaging/tarball.sh" "$bin_dir" "$work/tarball"

# A block of docs/INSTALL.md, as written.
extract() {
  awk -v name="$1" '
    $0 == "```sh install-test " name { on = 1; next }
    on && /^```$/ { exit }
    on { print }' "$repo/docs/INSTALL.md"
}
run_block() {
  local name=$1 dir=$2 script="$work/$1.sh"
  extract "$name" >"$script"
  [ -s "$script" ] || fail "docs/INSTALL.md has no block 'install-test $name'"
  step "docs/INSTALL.md: $name (in $dir)"
  if ! (cd "$dir" && bash -euo pipefail -c '
      sudo() { "$@"; }   # root already
      if [ ! -d /run/systemd/system ]; then
        systemctl() {
          local args=() a
          for a in "$@"; do [ "$a" = --now ] || args+=("$a"); done
          case "${args[0]}" in
            enable | disable) command systemctl "${args[@]}" ;;
          esac
          echo "(systemd is not running here: systemctl $* done on disk only)"
        }
      fi
      sed "s/^/+ /" "$0"
      source "$0"' "$script") 2>&1 | tee "$work/$name.out"; then
    fail "the block 'install-test $name' failed"
  fi
}

conf() { echo "/etc/tally/${1#tally-}.toml"; }
unit_file() { ls /usr/lib/systemd/system/"$1".service /lib/systemd/system/"$1".service 2>/dev/null | head -n 1; }
enabled() { [ -L "/etc/systemd/system/multi-user.target.wants/$1.service" ]; }
mode_owner() { [ "$(stat -c %a:%U "$1")" = "$2" ]; }
version_is() { [ "$(dpkg-query -W -f='${Version}' "$1")" = "$2" ]; }
is_conffile() { dpkg-query -W -f='${Conffiles}' "$1" | grep -q " $(conf "$1") "; }
refused() { [ "$1" = 64 ] && grep -q "CHANGE-ME placeholder" <<<"$2"; }
not_running() {
  if [ -d /run/systemd/system ]; then ! systemctl is-active --quiet "$1"; else ! pgrep -f "^/usr/bin/$1 " >/dev/null; fi
}

# --- the tarball -------------------------------------------------------------------------
run_block tarball-install "$work/tarball"
check "tarball: the binary is in /usr/local/bin" test -x /usr/local/bin/tally-agent
check "tarball: the sample configuration is 0600 root" mode_owner /etc/tally/agent.toml 600:root
check "tarball: the unit runs /usr/local/bin/tally-agent" \
  grep -q '^ExecStart=/usr/local/bin/tally-agent run' /etc/systemd/system/tally-agent.service
check "tarball: the unit is enabled" enabled tally-agent
check "tarball: --version ran" grep -q "^tally-agent $version" "$work/tarball-install.out"
run_block tarball-uninstall "$work/tarball"
check "tarball: removed" bash -c '! ls /usr/local/bin/tally-agent /etc/systemd/system/tally-agent.service /etc/tally/agent.toml 2>/dev/null'
check "tarball: disabled" bash -c '! test -e /etc/systemd/system/multi-user.target.wants/tally-agent.service'
rmdir /etc/tally

# --- the previous build, installed over nothing ------------------------------------------
run_block install-central "$work/prev"
run_block install-agent "$work/prev"
for pkg in tally-central tally-agent; do
  check "$pkg $previous is installed" version_is "$pkg" "$previous"
  check "$pkg: /usr/bin/$pkg runs" "/usr/bin/$pkg" --version
  check "$pkg: its unit is installed" test -n "$(unit_file "$pkg")"
  check "$pkg: its unit is enabled" enabled "$pkg"
  check "$pkg: it is not started" not_running "$pkg"
  check "$pkg: the sample $(conf "$pkg") is a conffile" is_conffile "$pkg"
  check "$pkg: the sample is 0600 root" mode_owner "$(conf "$pkg")" 600:root
  check "$pkg: the postinst says it is not started and what to do" \
    grep -q "installed and enabled, but not started" "$work/install-${pkg#tally-}.out"
  check "$pkg: the documentation is installed" test -f "/usr/share/doc/$pkg/INSTALL.md"
  set +e
  refusal=$("/usr/bin/$pkg" check-config --config "$(conf "$pkg")" 2>&1)
  code=$?
  set -e
  echo "$refusal"
  check "$pkg: check-config refuses the sample (exit 64, naming the placeholder)" \
    refused "$code" "$refusal"
done

# --- configured as the document says -----------------------------------------------------
run_block central-cert /tmp
check "gen-cert: the key is 0600 root" mode_owner /etc/tally/central-key.pem 600:root
run_block central-configure /tmp
check "central: check-config accepts the filled copy" grep -q "configuration is valid" "$work/central-configure.out"
run_block register-agent /tmp
check "the agent's token is 0600 root" mode_owner /etc/tally/wh1-agent.token 600:root
check "the agent's token is a central token" grep -q '^tly1_' /etc/tally/wh1-agent.token
run_block agent-configure /tmp
check "agent: check-config accepts the filled copy" grep -q "configuration is valid" "$work/agent-configure.out"

# --- data in place: the installed binaries sync an event on loopback ----------------------
step "the installed central and agent sync one event (loopback, ports from the OS)"
wait_for_line() { # FILE PATTERN: the first line of FILE matching PATTERN, within a minute
  local deadline=$((SECONDS + 60))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "nothing matched '$2' in $1 within a minute"
    sleep 0.2
  done
  grep -m 1 "$2" "$1"
}
/usr/bin/tally-central run --config /etc/tally/central.toml --listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 >"$work/central.out" 2>"$work/central.log" &
central_pid=$!
pids+=("$central_pid")
sync_addr=$(wait_for_line "$work/central.out" "listening on" | awk '{print $4}')
/usr/bin/tally-agent run --config /etc/tally/agent.toml --listen 127.0.0.1:0 \
  --central-url "wss://localhost:${sync_addr##*:}/v1/sync" >"$work/agent.out" 2>"$work/agent.log" &
agent_pid=$!
pids+=("$agent_pid")
agent_url=$(wait_for_line "$work/agent.out" "listening on" | awk '{print $4}')
sed -n 's/^scanner_tokens = \["\(.*\)"\]$/\1/p' /etc/tally/agent.toml >"$work/scanner.token"
curl -fsS -X POST "$agent_url/v1/events" -H "Authorization: Bearer $(cat "$work/scanner.token")" \
  -H 'Content-Type: application/json' \
  -d '{"id":"install-test-1","type":"receipt","sku":"SKU-1","qty":"5"}'
echo
deadline=$((SECONDS + 60))
until /usr/bin/tally-agent status --url "$agent_url" --scanner-token-file "$work/scanner.token" \
  2>/dev/null | grep -q '"acked_seq": 1'; do
  [ $SECONDS -lt $deadline ] || { cat "$work/agent.log" "$work/central.log"; fail "central did not acknowledge the event"; }
  sleep 0.2
done
echo "ok: central acknowledged the agent's event"
kill -TERM "$agent_pid" "$central_pid"
wait "$agent_pid" "$central_pid" || fail "a daemon did not stop cleanly on SIGTERM"
pids=()
check "the agent's log holds the event" bash -c \
  "/usr/bin/tally-agent export --config /etc/tally/agent.toml 2>/dev/null | grep -q install-test-1"
check "central's registry holds the agent" bash -c \
  "/usr/bin/tally-central agent --config /etc/tally/central.toml list 2>/dev/null | grep -q wh1-agent"
sums_before=$(sha256sum /etc/tally/agent.toml /etc/tally/central.toml)

run_block backup /tmp
check "backups written" test -s /var/backups/tally/agent.redb -a -s /var/backups/tally/central.redb

# --- the upgrade, with data in place -----------------------------------------------------
run_block upgrade "$work/new"
for pkg in tally-central tally-agent; do
  check "$pkg upgraded to $version-1" version_is "$pkg" "$version-1"
  check "$pkg: still enabled" enabled "$pkg"
done
check "the edited configurations are kept" bash -c "[ '$sums_before' = \"\$(sha256sum /etc/tally/agent.toml /etc/tally/central.toml)\" ]"
check "the agent's data is kept" bash -c \
  "/usr/bin/tally-agent export --config /etc/tally/agent.toml 2>/dev/null | grep -q install-test-1"
check "central's data is kept" bash -c \
  "/usr/bin/tally-central agent --config /etc/tally/central.toml list 2>/dev/null | grep -q wh1-agent"

# --- restore ---------------------------------------------------------------------------
run_block restore /tmp
check "restore: a new log, the event central acknowledged left out" \
  grep -q "0 events to send to central as a new log, 1 it had acknowledged left out" "$work/restore.out"
check "restore: the replaced log is kept" test -f /var/lib/tally-agent/events.redb.before-restore

# --- remove, then purge ---------------------------------------------------------------------
run_block remove /tmp
for pkg in tally-central tally-agent; do
  check "$pkg removed, its configuration kept (rc)" \
    bash -c "[ \"\$(dpkg-query -W -f='\${db:Status-Abbrev}' $pkg)\" = 'rc ' ]"
  check "$pkg: the binary is gone" bash -c "! test -e /usr/bin/$pkg"
  check "$pkg: the configuration is kept" test -f "$(conf "$pkg")"
done
check "the agent's data is kept" test -f /var/lib/tally-agent/events.redb
check "central's data is kept" test -f /var/lib/tally-central/central.redb
run_block purge /tmp
for pkg in tally-central tally-agent; do
  check "$pkg purged" bash -c "! dpkg-query -W $pkg >/dev/null 2>&1"
  check "$pkg: its data is gone" bash -c "! ls -d /var/lib/$pkg /var/lib/private/$pkg 2>/dev/null"
  check "$pkg: its unit is gone and disabled" bash -c \
    "! ls /usr/lib/systemd/system/$pkg.service /etc/systemd/system/multi-user.target.wants/$pkg.service 2>/dev/null"
done
check "/etc/tally is gone" bash -c '! test -e /etc/tally'

echo
echo "install test passed in $(($(date +%s) - started)) s"
