#!/usr/bin/env bash
# Installs the Debian packages voidbox needs on a fresh Debian 12 machine (idempotent).
# qemu-system-x86 (+ -common for virtiofsd): the VMM that runs here (TCG); busybox-static,
# kmod: the guest userland and modules.dep (guest image tests compare with depmod); cpio:
# tests read the initramfs back with GNU cpio. gcc, make, flex, bison, bc, libelf-dev
# (objtool) and xz-utils compile the guest kernel from Debian's linux-source.
# e2fsprogs: oci builds image disks (mkfs.ext4 -d, debugfs; tests run e2fsck).
# util-linux: unshare (read-only virtio-fs shares). docker-registry: the e2e suites push and
# pull images through a real registry on 127.0.0.1. debootstrap: the python example image.
# chromium: the report tests render the HTML report headless.
# curl: make contracts downloads the Cloud Hypervisor OpenAPI description when ../shared is absent.
set -euo pipefail
pkgs=(qemu-system-x86 qemu-system-common busybox-static kmod cpio ca-certificates
  gcc make flex bison bc libelf-dev xz-utils curl e2fsprogs util-linux docker-registry debootstrap chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "$(id -u)" != 0 ] && [ ${#missing[@]} -gt 0 ]; then
  echo "setup: missing packages ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
# The guest image build uses `apt-get download`, which needs package lists.
if [ ${#missing[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# QEMU drops to this user when voidbox runs as root (else it uses nobody).
if [ "$(id -u)" = 0 ] && ! id voidbox-vmm >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin voidbox-vmm
  echo "setup: created system user voidbox-vmm (QEMU runs as it when voidbox is root)"
fi
echo "setup: packages present: ${pkgs[*]}"
