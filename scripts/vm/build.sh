#!/usr/bin/env bash
# Prepares what scripts/vm/run.sh boots, in a cache directory (default /var/cache/codejail-vm,
# or $CODEJAIL_VM_CACHE): Debian's own kernel (built with AppArmor enabled by default and every
# cgroup v2 controller, unlike some CI hosts' kernels) and a busybox initramfs that mounts the
# host's root read-only over 9p with a tmpfs overlay. Idempotent: a finished step is not redone,
# and each step writes to a temporary name and renames, so an interrupted build never leaves a
# half-written file that a later run would trust.
#
# CODEJAIL_VM_KERNEL=bookworm (default: Debian 12's 6.1) or trixie (Debian 13's 6.12): see
# scripts/vm/kernels.sh for where each is cached.
#
# Needs: apt-get (download only: nothing is installed), dpkg, busybox (busybox-static); for trixie,
# Debian's archive keyring with the trixie keys (debian-archive-keyring, as bookworm ships it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/kernels.sh"
KERNEL_PACKAGE=${CODEJAIL_VM_KERNEL_PACKAGE:-linux-image-amd64}
MIRROR=${CODEJAIL_VM_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${CODEJAIL_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "scripts/vm/build.sh: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg dpkg-deb; do command -v "$tool" >/dev/null || die "$tool is missing (a Debian host is needed)"; done
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || die "busybox is missing: apt-get install busybox-static"
# A dynamically linked busybox would need its libraries inside the initramfs.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is not statically linked: apt-get install busybox-static"
fi

mkdir -p "$KERNEL_CACHE"
cd "$KERNEL_CACHE"

# Which apt the kernel comes from. bookworm: the host's own configuration (this is a Debian 12
# host). trixie: the host's apt with its sources and package lists swapped for private ones in
# apt/ (its proxy and other settings kept), so that nothing of trixie reaches the host's
# sources, lists or package cache.
apt_options=()
if [ "$VM_KERNEL" = trixie ]; then
  [ -f "$KEYRING" ] || die "$KEYRING is missing: apt-get install debian-archive-keyring"
  mkdir -p apt/lists/partial apt/cache/archives/partial apt/sources.list.d
  printf '%s\n' \
    "deb [signed-by=$KEYRING] $MIRROR trixie main" \
    "deb [signed-by=$KEYRING] $SECURITY_MIRROR trixie-security main" > apt/sources.list.tmp
  mv apt/sources.list.tmp apt/sources.list
  apt_options=(-o "Dir::Etc::sourcelist=$KERNEL_CACHE/apt/sources.list" -o "Dir::Etc::sourceparts=$KERNEL_CACHE/apt/sources.list.d"
    -o "Dir::State::Lists=$KERNEL_CACHE/apt/lists" -o "Dir::Cache=$KERNEL_CACHE/apt/cache" -o "APT::Get::List-Cleanup=0")
fi

# 1. The kernel: linux-image-amd64 is a metapackage; follow it to the versioned image package.
if [ ! -f kernel/.done ]; then
  # Nothing found (apt-cache fails without package lists) is an empty answer, not an exit.
  resolve() { apt-cache "${apt_options[@]}" depends "$KERNEL_PACKAGE" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true; }
  image=$(resolve)
  # A fresh CI machine may have no package lists yet (and trixie's private lists start empty);
  # refresh them once (as root only).
  if [ -z "$image" ] && [ "$(id -u)" = 0 ]; then apt-get "${apt_options[@]}" update -qq >&2 && image=$(resolve); fi
  [ -n "$image" ] || die "cannot resolve $KERNEL_PACKAGE ($VM_KERNEL) to a linux-image-<version> package (apt-get update?)"
  case "$VM_KERNEL:$image" in
    bookworm:linux-image-6.1.*|trixie:linux-image-6.12.*) ;;
    *) die "$KERNEL_PACKAGE ($VM_KERNEL) resolved to $image, not the kernel series that release ships" ;;
  esac
  rm -rf kernel.tmp && mkdir kernel.tmp
  (cd kernel.tmp && apt-get "${apt_options[@]}" download -q "$image" >/dev/null) || die "apt-get download $image ($VM_KERNEL) failed"
  dpkg -x kernel.tmp/*.deb kernel.tmp/root
  rm -f kernel.tmp/*.deb
  rm -rf kernel && mv kernel.tmp kernel
  echo "$image" > kernel/.done
fi
VMLINUZ=$(ls "$KERNEL_CACHE"/kernel/root/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
# Debian 13's packages are merged-/usr: the modules are under usr/lib/modules.
MODDIR=$KERNEL_CACHE/kernel/root/lib/modules/$KVER
[ -d "$MODDIR" ] || MODDIR=$KERNEL_CACHE/kernel/root/usr/lib/modules/$KVER
[ -d "$MODDIR" ] || die "modules for $KVER are missing under $KERNEL_CACHE/kernel/root: remove $KERNEL_CACHE/kernel and retry"

# 2. The initramfs: busybox, the 9p/virtio/overlay modules (Debian builds them as modules), and
# scripts/vm/init. Rebuilt when init or busybox changes, so an edited init is always used.
stamp=$(cat "$HERE/init" "$BUSYBOX" | sha256sum | cut -c1-16)
if [ ! -f initramfs.stamp ] || [ "$(cat initramfs.stamp)" != "$stamp-$KVER" ]; then
  rm -rf initramfs.tmp && mkdir -p initramfs.tmp/{bin,dev,proc,sys,mnt,newroot,modules}
  cp "$BUSYBOX" initramfs.tmp/bin/busybox
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do
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
echo "kernel $KVER ($VM_KERNEL): $KERNEL_CACHE/vmlinuz"
echo "initramfs: $KERNEL_CACHE/initramfs.cpio.gz"
