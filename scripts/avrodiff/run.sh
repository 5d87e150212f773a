#!/usr/bin/env bash
# Asks Apache Avro (Java) for the compatibility verdict on every reader/writer
# pair of a JSON-lines corpus; the reference side of schemas/compat's
# differential test.
#
#   bash scripts/avrodiff/run.sh CORPUS.jsonl [OUT.jsonl]
#
# Writes one verdict line per pair (see AvroDiff.java) to OUT, or to a fresh
# temporary file, and prints the output path on stdout. Everything else goes to
# stderr.
#
# The Avro jars come from Maven Central once, through the project's pom, into
# ${EVENTLINE_CACHE:-$HOME/.cache/eventline}/avrodiff-<version>/libs (outside
# the repo); a marker holding the pom's checksum says the copy is complete and
# current, so an interrupted download or an edited pom is fetched again.
# Needs java (17+, for the single-file source launcher) and mvn.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/pom.xml"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 CORPUS.jsonl [OUT.jsonl]" >&2
  exit 2
fi
corpus=$1
out=${2:-}

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "avrodiff: $tool not found; install a JDK (17+) and Maven" >&2
    exit 1
  fi
done

# The pom is the one place the Avro version is written down.
version=$(sed -n 's:.*<avro.version>\(.*\)</avro.version>.*:\1:p' "$pom")
if [ -z "$version" ]; then
  echo "avrodiff: no <avro.version> in $pom" >&2
  exit 1
fi

cache=${EVENTLINE_CACHE:-$HOME/.cache/eventline}
dir="$cache/avrodiff-$version"
libs="$dir/libs"
marker="$dir/complete"
want=$(sha256sum "$pom" | cut -d' ' -f1)

if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$want" ] || [ ! -d "$libs" ]; then
  echo "avrodiff: fetching Apache Avro $version jars into $libs" >&2
  mkdir -p "$dir"
  # Copy into a private directory and move it into place, so a concurrent run
  # or an interrupted one never sees a half-filled libs directory.
  tmp=$(mktemp -d "$dir/libs.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # Maven 3.8 prints colour resets even with -q and -B; strip them.
  mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  rm -rf "$libs"
  mv "$tmp" "$libs"
  trap - EXIT
  echo "$want" >"$marker"
fi

if [ -z "$out" ]; then
  out=$(mktemp "${TMPDIR:-/tmp}/avrodiff.XXXXXX.jsonl")
fi

java -cp "$libs/*" "$here/AvroDiff.java" "$corpus" "$out" >&2
echo "$out"
