#!/usr/bin/env bash
# Prepares what scripts/vm/run.sh boots, in a cache directory (default /var/cache/codejail-vm,
# or $CODEJAIL_VM_CACHE): Debian's own kernel (built with AppArmor enabled by default and every
# cgroup v2 controller, unlike some CI hosts' kernels) and a busybox initramfs that mounts the
# host's root read-only over 9p with a tmpfs overlay. Idempotent: a finished step is not redone,
# and each step writes to a temporary name and renames, so an interrupted build never leaves a
# half-written file that a later run would trust.
#
# Needs: apt-get (download only: nothing is installed), dpkg, busybox (busybox-static).
set -euo pipefail

CACHE=${CODEJAIL_VM_CACHE:-/var/cache/codejail-vm}
KERNEL_PACKAGE=${CODEJAIL_VM_KERNEL_PACKAGE:-linux-image-amd64}
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "scripts/vm/build.sh: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg dpkg-deb; do command -v "$tool" >/dev/null || die "$tool is missing (a Debian host is needed)"; done
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || die "busybox is missing: apt-get install busybox-static"
# A dynamically linked busybox would need its libraries inside the initramfs.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is not statically linked: apt-get install busybox-static"
fi

mkdir -p "$CACHE"
cd "$CACHE"

# 1. The kernel: linux-image-amd64 is a metapackage; follow it to the versioned image package.
if [ ! -f kernel/.done ]; then
  resolve() { apt-cache depends "$KERNEL_PACKAGE" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
  image=$(resolve)
  # A fresh CI machine may have no package lists yet; refresh them once (as root only).
  if [ -z "$image" ] && [ "$(id -u)" = 0 ]; then apt-get update -qq >&2 && image=$(resolve); fi
  [ -n "$image" ] || die "cannot resolve $KERNEL_PACKAGE to a linux-image-<version> package (apt-get update?)"
  rm -rf kernel.tmp && mkdir kernel.tmp
  (cd kernel.tmp && apt-get download -q "$image" >/dev/null) || die "apt-get download $image failed"
  dpkg -x kernel.tmp/*.deb kernel.tmp/root
  rm -f kernel.tmp/*.deb
  rm -rf kernel && mv kernel.tmp kernel
  echo "$image" > kernel/.done
fi
VMLINUZ=$(ls "$CACHE"/kernel/root/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$CACHE/kernel/root/lib/modules/$KVER
[ -d "$MODDIR" ] || die "modules for $KVER are missing under $MODDIR: remove $CACHE/kernel and retry"

# 2. The initramfs: busybox, the 9p/virtio/overlay modules (Debian builds them as modules), and
# scripts/vm/init. Rebuilt when init or busybox changes, so an edited init is always used.
stamp=$(cat "$HERE/init" "$BUSYBOX" | sha256sum | cut -c1-16)
if [ ! -f initramfs.stamp ] || [ "$(cat initramfs.stamp)" != "$stamp-$KVER" ]; then
  rm -rf initramfs.tmp && mkdir -p initramfs.tmp/{bin,dev,proc,sys,mnt,newroot,modules}
  cp "$BUSYBOX" initramfs.tmp/bin/busybox
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p overlay; do
    f=$(find "$MODDIR" -name "$m.ko*" | head -1)
    # A module missing here is built into this kernel: init skips what it does not find.
    [ -n "$f" ] || continue
    case "$f" in
      *.xz) xz -dc "$f" > "initramfs.tmp/modules/$m.ko" ;;
      *.zst) zstd -qdc "$f" > "initramfs.tmp/modules/$m.ko" ;;
      *) cp "$f" "initramfs.tmp/modules/$m.ko" ;;
    esac
  done
  install -m 0755 "$HERE/init" initramfs.tmp/init
  (cd initramfs.tmp && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 > ../initramfs.cpio.gz.tmp)
  mv initramfs.cpio.gz.tmp initramfs.cpio.gz
  rm -rf initramfs.tmp
  echo "$stamp-$KVER" > initramfs.stamp
fi

ln -sfn "$VMLINUZ" vmlinuz
echo "kernel $KVER: $CACHE/vmlinuz"
echo "initramfs: $CACHE/initramfs.cpio.gz"
