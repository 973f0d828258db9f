# Sourced by scripts/vm/build.sh and run.sh: which Debian kernel the VM boots, and where its
# files are cached. CODEJAIL_VM_KERNEL picks the release:
#   bookworm (default)  Debian 12's kernel 6.1, from the host's own apt sources, cached at the top
#                       of the cache directory (where it always was)
#   trixie              Debian 13's kernel 6.12 (AppArmor 4's kernel side), from a private apt
#                       configuration in <cache>/trixie/apt: the host's apt sources stay untouched
# The cache directory (CODEJAIL_VM_CACHE, default /var/cache/codejail-vm) is shared by the kernels,
# and so is its run.lock: one VM at a time, whichever kernel it boots.
CACHE=${CODEJAIL_VM_CACHE:-/var/cache/codejail-vm}
VM_KERNEL=${CODEJAIL_VM_KERNEL:-bookworm}
case "$VM_KERNEL" in
  bookworm) KERNEL_CACHE=$CACHE ;;
  trixie) KERNEL_CACHE=$CACHE/trixie ;;
  *) echo "scripts/vm: CODEJAIL_VM_KERNEL=$VM_KERNEL: expected bookworm or trixie" >&2; exit 2 ;;
esac
