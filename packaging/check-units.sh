#!/usr/bin/env bash
# Checks the systemd units as CI does: `systemd-analyze verify` (directives, specifiers, that
# ExecStart= names an executable) and their exposure score from `systemd-analyze security`,
# which must stay at or under 1.1 (the scores recorded in packaging/README.md).
#   bash packaging/check-units.sh DIR   # DIR holds the built tally-agent and tally-central
set -euo pipefail
bin_dir=$(cd "${1:?usage: check-units.sh DIR-WITH-THE-BUILT-BINARIES}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in tally-agent tally-central; do
  # verify refuses an ExecStart= whose binary is not installed: point it at the built ones.
  sed "s|/usr/bin/|$bin_dir/|g" "$here/$unit.service" >"$work/$unit.service"
done
cd "$work"
systemd-analyze verify ./tally-agent.service ./tally-central.service
for unit in tally-agent tally-central; do
  systemd-analyze security --offline=true --threshold=11 "./$unit.service" | tail -n 1
done
