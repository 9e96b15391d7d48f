#!/usr/bin/env bash
# System packages the test suite drives for real: OpenSSH (a real sshd on loopback for `scorecheck remote`) and
# Debian's Chromium (the HTML report in a real headless browser). Installed with apt when missing and allowed.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/bin/chromium ] || need+=(chromium fonts-liberation)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "note: missing system packages (${need[*]}); the tests that need them will skip. Install them with:" >&2
  echo "  sudo apt-get install ${need[*]}" >&2
fi
