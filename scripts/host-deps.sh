#!/usr/bin/env bash
# The Debian packages ringzero needs on the host to build its default guest image: depmod (kmod) computes the
# kernel package's modules.dep, dpkg-deb extracts packages, apt-get downloads them over HTTPS (ca-certificates);
# GNU cpio is an independent reader for the initramfs tests; mkfs.ext4 (e2fsprogs) builds the ext4 root disk from
# a directory (mkfs.ext4 -d, no mount needed). Installs what is missing (as root), or says what to
# install. `--update` refreshes the package lists first (CI builds from what the mirror has now). `--test` (implied
# when CI=true) adds what the integration tests build on the host: gcc and a static libc (libc6-dev) for the guest's
# vsock test client (test/virtio-root-guest.test.ts), qemu-utils for the qcow2 interop tests, busybox for the
# host end of the virtio-net tests (ping, nc and httpd inside a network namespace) and acpica-tools (iasl) to
# disassemble the DSDT ringzero writes (test/acpi-tables.test.ts).
set -euo pipefail

update=no
tests=no
[ "${CI:-}" = "true" ] && tests=yes
for arg in "$@"; do
  case "$arg" in
    --update) update=yes ;;
    --test) tests=yes ;;
    *) echo "host-deps: unknown option $arg (use --update, --test)" >&2; exit 2 ;;
  esac
done

missing=()
command -v depmod >/dev/null 2>&1 || [ -x /sbin/depmod ] || [ -x /usr/sbin/depmod ] || missing+=(kmod)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || [ -x /usr/sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
if [ "$tests" = yes ]; then
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/libc.a ] || missing+=(libc6-dev)
  # qemu-img/qemu-io check that qcow2 images ringzero writes are valid and that it reads theirs
  # (test/storage-qcow2.test.ts); debugfs (e2fsprogs) reads the guests' ext4 disks back.
  command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
  command -v busybox >/dev/null 2>&1 || missing+=(busybox)
  command -v iasl >/dev/null 2>&1 || missing+=(acpica-tools)
fi

if [ "$(id -u)" -ne 0 ]; then
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "ringzero: missing host packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  exit 0
fi
if [ "$update" = yes ]; then
  echo "host-deps: apt-get update"
  apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "host-deps: installing ${missing[*]}"
  [ "$update" = yes ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
