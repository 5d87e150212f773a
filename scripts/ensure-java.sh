#!/usr/bin/env bash
# Makes sure Java 17+ and Maven are installed: the real-Kafka harness and the
# differential test against Apache Avro run on them. Root on Debian/Ubuntu:
# installs them with apt-get; anyone else: says what to install and fails.
set -euo pipefail

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [ -n "$v" ] && [ "${v%%.*}" -ge 17 ]
}
mvn_ok() { command -v mvn >/dev/null 2>&1; }

if java_ok && mvn_ok; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-java: installing a JDK (17+) and Maven with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  pkgs=(maven)
  java_ok || pkgs+=(default-jdk-headless)
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
  java_ok && mvn_ok || { echo "ensure-java: installed, but java 17+ or mvn is still missing" >&2; exit 1; }
  exit 0
fi
cat >&2 <<'MSG'
ensure-java: Java 17+ and Maven are needed (real-Kafka tests, Apache Avro differential test).
  Debian/Ubuntu:  sudo apt-get install default-jdk-headless maven
MSG
exit 1
