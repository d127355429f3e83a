#!/usr/bin/env bash
# The Windows agent's smoke test under Wine: `tally-agent.exe service install`, a configuration
# in %ProgramData%\Tally, `service start`, an event posted and stored, `service stop` (the agent
# logs its clean stop in its rotating log file and exits 0), the event in the log, `service
# uninstall`. Run on Debian with Wine (wine64) and the exe built for x86_64-pc-windows-gnu:
#   bash packaging/windows/wine-smoke.sh target/x86_64-pc-windows-gnu/debug/tally-agent.exe
# Debian 12's Wine 8.0 lacks bcryptprimitives.dll (ProcessPrng), which Rust's standard library
# takes its random numbers from: bcryptprimitives.c, a stand-in forwarding to RtlGenRandom, is
# built with mingw-w64 and put beside the exe. It is for this test only, never shipped.
set -euo pipefail
exe=$(realpath "${1:?usage: wine-smoke.sh PATH/TO/tally-agent.exe}")
here=$(cd "$(dirname "$0")" && pwd)
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver64)
[ -x "$wine" ] || { echo "wine64 is not installed" >&2; exit 1; }
export WINEDEBUG=-all WINEPREFIX
WINEPREFIX=$(mktemp -d /tmp/tally-wine.XXXXXX)
started=$(date +%s)
fail() { echo "FAILED: $*" >&2; [ -f "$log" ] && cat "$log" >&2; exit 1; }
cleanup() { "$wineserver" -k 2>/dev/null || true; rm -rf "$WINEPREFIX"; }
trap cleanup EXIT

x86_64-w64-mingw32-gcc -shared -O2 -o "$(dirname "$exe")/bcryptprimitives.dll" \
  "$here/bcryptprimitives.c" -ladvapi32
agent() { timeout 120 "$wine" "$exe" "$@" | tr -d '\r'; }
# One wineserver for the whole test: an idle one exits and takes the service with it.
"$wineserver" -p
agent --version
root="$WINEPREFIX/drive_c/ProgramData/Tally"
log="$root/logs/tally-agent.log"

agent service install
grep -q CHANGE-ME "$root/agent.toml" || fail "install wrote no sample configuration"
token=wine-smoke-token-0123456789
printf '%s\n' "data_dir = 'C:\\ProgramData\\Tally\\data'" 'listen = "127.0.0.1:0"' \
  'agent_id = "wine1"' 'warehouse = "WH"' "scanner_tokens = [\"$token\"]" >"$root/agent.toml"
agent check-config --config 'C:\ProgramData\Tally\agent.toml'
agent service start
deadline=$((SECONDS + 60))
until grep -q 'tally-agent ready' "$log" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "the service did not start"
  sleep 0.2
done
# Printed from a variable: `tee /dev/stderr` would reopen (and truncate) a stderr that is a
# file, such as CI's log.
status=$(agent service status)
echo "$status"
grep -q Running <<<"$status" || fail "the service is not running"
addr=$(grep -o 'addr=[0-9.:]*' "$log" | tail -n 1 | cut -d= -f2)
answer=$(curl -sS -w ' %{http_code}' -X POST "http://$addr/v1/events" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"id":"wine-1","type":"receipt","sku":"SKU-1","qty":"2"}')
echo "$answer"
[ "${answer##* }" = 201 ] || fail "the event was not stored"
agent service stop
deadline=$((SECONDS + 60))
until agent service status | grep -q 'Stopped, exit code Win32(0)'; do
  [ $SECONDS -lt $deadline ] || fail "the service did not stop with exit code 0"
  sleep 0.2
done
grep -q 'shutdown requested' "$log" && grep -q 'INFO tally_agent: stopped' "$log" ||
  fail "the log file does not show a clean stop"
agent export --data-dir 'C:\ProgramData\Tally\data' | grep -q '"id":"wine-1"' ||
  fail "the event is not in the log"
agent service uninstall
if agent service status 2>/dev/null; then fail "the service is still registered"; fi
echo "wine smoke test passed in $(($(date +%s) - started)) s"
