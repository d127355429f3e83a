#!/usr/bin/env bash
# Makes the Linux tarball from built binaries: tally-VERSION-x86_64-linux.tar.gz holding bin/
# (tally-agent, tally-central), packaging/ (units, sample configurations) and the documents.
#   bash packaging/tarball.sh DIR-WITH-THE-BINARIES [OUT-DIR]     (docs/INSTALL.md: installing it)
set -euo pipefail
bin_dir=$(cd "${1:?usage: tarball.sh DIR-WITH-THE-BINARIES [OUT-DIR]}" && pwd)
out_dir=$(mkdir -p "${2:-.}" && cd "${2:-.}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
version=$("$bin_dir/tally-agent" --version | awk '{print $2}')
name="tally-$version-x86_64-linux"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin" "$stage/$name/packaging" "$stage/$name/docs"
install -m 0755 "$bin_dir/tally-agent" "$bin_dir/tally-central" "$stage/$name/bin/"
install -m 0644 "$repo"/packaging/*.service "$repo"/packaging/*.example.toml \
    "$repo/packaging/README.md" "$stage/$name/packaging/"
install -m 0644 "$repo/docs/INSTALL.md" "$stage/$name/docs/"
install -m 0644 "$repo/README.md" "$stage/$name/"
tar -C "$stage" -czf "$out_dir/$name.tar.gz" "$name"
echo "$out_dir/$name.tar.gz"
