#!/usr/bin/env bash
# The Debian packages ringzero needs on the host to build its default guest image: depmod (kmod) computes the
# kernel package's modules.dep, dpkg-deb extracts packages, apt-get downloads them over HTTPS (ca-certificates);
# GNU cpio is an independent reader for the initramfs tests. Installs what is missing (as root), or says what to
# install. `--update` refreshes the package lists first (CI builds from what the mirror has now).
set -euo pipefail

missing=()
command -v depmod >/dev/null 2>&1 || [ -x /sbin/depmod ] || [ -x /usr/sbin/depmod ] || missing+=(kmod)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)

if [ "$(id -u)" -ne 0 ]; then
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "ringzero: missing host packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  exit 0
fi
if [ "${1:-}" = "--update" ]; then
  echo "host-deps: apt-get update"
  apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "host-deps: installing ${missing[*]}"
  [ "${1:-}" = "--update" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
