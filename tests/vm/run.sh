#!/usr/bin/env bash
# The real-kernel test VM: a Debian 12 guest under QEMU that runs ./setup.sh, `lab doctor`,
# the tests that need sch_netem and the OVS kernel datapath (tests/vm), and
# `lab verify --links netem` on the default topology, then powers off. Run as root:
#
#     tests/vm/run.sh            (or: make vm-test)
#
# Exit status: the guest's test status (0 all passed), 1 a guest step failed, 3 the VM
# could not be built or booted, 124 the VM timed out (QEMU killed).
#
# What is cached (in $HCLAB_VM_CACHE, default /var/cache/hclab-vm), by content keys:
#   rootfs-<K1>/      debootstrap of bookworm with linux-image-amd64 and setup.sh's PACKAGES
#                     (K1: the package list, the mirror and this builder's version)
#   wheels-<K2>/      wheels of the project's Python dependencies (K2: pyproject.toml)
#   image-<K1K2>.img  ext4 root image (mkfs.ext4 -d): the rootfs + /root/hclab/.venv made
#                     from those wheels in a chroot at native speed, + kernel and initrd
# Each run boots a throw-away qcow2 overlay of the image; the working tree (without .venv,
# .git, build/, results/) reaches the guest over 9p, results come back in the same share and
# on the serial console.
#
# Environment: HCLAB_VM_CACHE, HCLAB_VM_MEMORY (MB, default 3072), HCLAB_VM_CPUS (default:
# host cores, at most 4), HCLAB_VM_TIMEOUT (s, default 1500), HCLAB_VM_ACCEL (auto|kvm|tcg,
# default auto: kvm only when /dev/kvm boots this kernel), HCLAB_VM_MIRROR (default: the
# machine's apt mirror), HCLAB_VM_OUT (keep the results there), HCLAB_VM_VERIFY=0 (skip
# lab verify), HCLAB_VM_VERIFY_ARGS (lab verify's tolerance options, default
# "--tolerance-ms 3"), HCLAB_VM_VERIFY_BUILTIN=0 (skip the second lab verify, with the
# builtin controller; both decide the status otherwise),
# HCLAB_VM_PYTEST_ARGS (extra pytest arguments), HCLAB_VM_PATCH (a patch
# applied to the guest's copy of the project only, to try a fix in the VM).
set -euo pipefail

BUILDER_VERSION=1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${HCLAB_VM_CACHE:-/var/cache/hclab-vm}
MEMORY=${HCLAB_VM_MEMORY:-3072}
ncpu=$(nproc); [ "$ncpu" -gt 4 ] && ncpu=4
CPUS=${HCLAB_VM_CPUS:-$ncpu}
TIMEOUT=${HCLAB_VM_TIMEOUT:-1500}
ACCEL=${HCLAB_VM_ACCEL:-auto}
SUITE=bookworm
IMAGE_SIZE=6G

T0=$(date +%s)
log() { printf '[vm %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { log "error: $*" >&2; exit 3; }

[ "$(id -u)" = 0 ] || { echo "tests/vm/run.sh: run as root (debootstrap, chroot, mkfs)" >&2; exit 2; }

# -- host tools ----------------------------------------------------------------------------
need=""
command -v qemu-system-x86_64 >/dev/null || need="$need qemu-system-x86"
command -v qemu-img >/dev/null || need="$need qemu-utils"
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v mkfs.ext4 >/dev/null || need="$need e2fsprogs"
command -v rsync >/dev/null || need="$need rsync"
if [ -n "$need" ]; then
    log "installing host tools:$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $need >/dev/null
fi

# -- clean-up on any exit ------------------------------------------------------------------
WORK=""
QEMU_PID=""
TAIL_PID=""
BUILD_TMP=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        sleep 1
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null || true
    [ -n "$BUILD_TMP" ] && rm -rf "$BUILD_TMP"
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another VM run holds $CACHE/.lock"

# -- stage 1: the root filesystem (debootstrap), keyed on the package list ---------------
apt_mirror() {  # the first Debian (not security) archive this machine's apt uses
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | sed -n -E 's/^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?//p' \
        | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -1 || true
}
mirror=${HCLAB_VM_MIRROR:-$(apt_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}
setup_packages=$(sed -n '/^PACKAGES="/,/"/p' "$ROOT/setup.sh" | sed 's/^PACKAGES=//' | tr -d '"')
[ -n "$setup_packages" ] || die "could not read PACKAGES from setup.sh"
# The guest also needs a kernel (with its initramfs) and module loading; certificates and pip
# serve setup.sh's fallback to PyPI (QEMU user networking) when the prebuilt venv does not
# match pyproject.toml.
vm_packages="linux-image-amd64 initramfs-tools kmod ca-certificates python3-pip"
packages=$(echo $setup_packages $vm_packages | tr ' ' '\n' | sort -u | tr '\n' ' ')
K1=$(printf '%s\n' "$BUILDER_VERSION" "$SUITE" "$mirror" "$packages" | sha256sum | cut -c1-12)
ROOTFS=$CACHE/rootfs-$K1

if [ ! -f "$ROOTFS/.hclab-complete" ]; then
    log "building the root filesystem (debootstrap $SUITE from $mirror, key $K1)"
    rm -rf "$ROOTFS" "$ROOTFS.tmp"
    t=$(date +%s)
    # Own mount and PID namespaces: debootstrap's /proc and /sys mounts vanish with them, and
    # nothing a maintainer script might start survives on the host.
    if ! unshare --mount --pid --fork --kill-child \
        debootstrap --variant=minbase --components=main \
            --include="$(echo $packages | tr ' ' ,)" \
            "$SUITE" "$ROOTFS.tmp" "$mirror" >"$CACHE/debootstrap-$K1.log" 2>&1; then
        tail -20 "$CACHE/debootstrap-$K1.log" >&2
        rm -rf "$ROOTFS.tmp"
        die "debootstrap failed (log: $CACHE/debootstrap-$K1.log)"
    fi
    log "debootstrap took $(( $(date +%s) - t )) s"
    R=$ROOTFS.tmp
    rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*_Packages
    echo hclab-vm > "$R/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 hclab-vm\n::1 localhost\n' > "$R/etc/hosts"
    printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$R/etc/fstab"
    printf 'nameserver 10.0.2.3\n' > "$R/etc/resolv.conf"
    touch "$R/.hclab-complete"
    mv "$R" "$ROOTFS"
    # Older root filesystems and images of other package lists are stale now.
    find "$CACHE" -maxdepth 1 -name 'rootfs-*' ! -name "rootfs-$K1" -exec rm -rf {} +
fi

# -- stage 2: wheels of the Python dependencies, keyed on pyproject.toml --------------------
K2=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-12)
WHEELS=$CACHE/wheels-$K2
if [ ! -f "$WHEELS/.hclab-complete" ]; then
    log "collecting wheels of the project's dependencies (key $K2)"
    rm -rf "$WHEELS"; mkdir -p "$WHEELS"
    t=$(date +%s)
    deps=$(/usr/bin/python3 - "$ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(data["project"]["dependencies"] + data["build-system"]["requires"] + ["wheel"]))
EOF
)
    # The guest's Python is bookworm's /usr/bin/python3 (3.11, x86_64), the same as this
    # machine's: `pip wheel` in a throw-away venv of it gives wheels for every dependency
    # (building the few that PyPI has only as source) with the pip configuration of the host.
    PIPVENV=$(mktemp -d /var/tmp/hclab-vm-pip.XXXXXX); BUILD_TMP=$PIPVENV
    # shellcheck disable=SC2086
    if ! { /usr/bin/python3 -m venv "$PIPVENV/v" \
           && "$PIPVENV/v/bin/python" -m pip wheel -q --disable-pip-version-check \
                  -w "$WHEELS" $deps; } >"$CACHE/wheels-$K2.log" 2>&1; then
        tail -20 "$CACHE/wheels-$K2.log" >&2
        rm -rf "$WHEELS"
        die "pip wheel failed (log: $CACHE/wheels-$K2.log)"
    fi
    rm -rf "$PIPVENV"; BUILD_TMP=""
    log "pip wheel took $(( $(date +%s) - t )) s ($(ls "$WHEELS" | wc -l) wheels)"
    touch "$WHEELS/.hclab-complete"
    find "$CACHE" -maxdepth 1 -name 'wheels-*' ! -name "wheels-$K2" -exec rm -rf {} +
fi

# -- stage 3: the root image (rootfs + venv), keyed on both -------------------------------
K3=$K1$K2$(sha256sum "$HERE/init.sh" | cut -c1-4)
IMAGE=$CACHE/image-$K3.img
if [ ! -f "$IMAGE.complete" ]; then
    log "making the root image (venv from the wheels in a chroot, then mkfs.ext4 -d)"
    t=$(date +%s)
    rm -f "$IMAGE" "$IMAGE.complete"
    BUILD_TMP=$(mktemp -d /var/tmp/hclab-vm-build.XXXXXX)
    mkdir -p "$BUILD_TMP/upper" "$BUILD_TMP/work" "$BUILD_TMP/merged"
    # The venv lives where the project will live in the guest (/root/hclab), so its editable
    # install and its scripts' #! lines are right there. Only pyproject.toml and the package
    # directories are needed to install it; the guest gets the current tree at boot.
    sha=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
    export HERE ROOT WHEELS BUILD_TMP ROOTFS IMAGE IMAGE_SIZE sha
    unshare --mount --pid --fork --kill-child /bin/bash -euo pipefail -c '
        M=$BUILD_TMP/merged
        mount -t overlay overlay -o lowerdir=$ROOTFS,upperdir=$BUILD_TMP/upper,workdir=$BUILD_TMP/work $M
        mkdir -p $M/root/hclab $M/tmp/wheels
        cp -a $ROOT/pyproject.toml $M/root/hclab/
        for d in lab topologies controllers measurements benchmarks; do
            rsync -a --exclude __pycache__ $ROOT/$d $M/root/hclab/
        done
        mount --bind $WHEELS $M/tmp/wheels
        mount -t proc proc $M/proc
        mount -t devtmpfs devtmpfs $M/dev 2>/dev/null || mount --rbind /dev $M/dev
        chroot $M /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /bin/sh -ec "
            cd /root/hclab
            /usr/bin/python3 -m venv --system-site-packages .venv
            PIP_CONFIG_FILE=/dev/null .venv/bin/python -m pip install -q --disable-pip-version-check \
                --no-index --find-links /tmp/wheels -e .
            .venv/bin/python -c \"import os_ken, numpy, psycopg, mininet.net\"
            echo $sha > .venv/.hclab-pyproject.sha256
            touch .venv/.hclab-installed
            rm -rf /root/.cache
        " || exit 1
        umount $M/dev $M/proc $M/tmp/wheels
        rmdir $M/tmp/wheels
        # The guest gets the current tree at boot; keep only the venv in /root/hclab.
        find $M/root/hclab -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
        rm -f $M/.hclab-complete
        install -m 755 $HERE/init.sh $M/sbin/hclab-init
        mkfs.ext4 -q -F -L hclab-root -d $M $IMAGE.tmp $IMAGE_SIZE >/dev/null
    ' || die "building the root image failed"
    # Kernel and initrd, taken from the rootfs
    kernel=$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -1)
    initrd=$(ls "$ROOTFS"/boot/initrd.img-* | sort -V | tail -1)
    [ -f "$kernel" ] && [ -f "$initrd" ] || die "no kernel/initrd in $ROOTFS/boot"
    cp "$kernel" "$CACHE/vmlinuz-$K3"
    cp "$initrd" "$CACHE/initrd-$K3"
    mv "$IMAGE.tmp" "$IMAGE"
    rm -rf "$BUILD_TMP"; BUILD_TMP=""
    touch "$IMAGE.complete"
    find "$CACHE" -maxdepth 1 \( -name 'image-*' -o -name 'vmlinuz-*' -o -name 'initrd-*' \) \
        ! -name "*-$K3*" -exec rm -f {} +
    log "root image made in $(( $(date +%s) - t )) s ($(du -h --apparent-size "$IMAGE" | cut -f1) sparse, $(du -h "$IMAGE" | cut -f1) used)"
fi

# -- stage 4: boot ---------------------------------------------------------------------------
WORK=$(mktemp -d /var/tmp/hclab-vm-run.XXXXXX)
mkdir -p "$WORK/share/out"
rsync -a --exclude /.venv --exclude /.git --exclude /build --exclude /results \
    --exclude __pycache__ --exclude .pytest_cache --exclude '*.egg-info' "$ROOT/" "$WORK/share/src/"
{
    echo "HCLAB_VM_VERIFY=${HCLAB_VM_VERIFY:-1}"
    printf 'HCLAB_VM_PYTEST_ARGS=%q\n' "${HCLAB_VM_PYTEST_ARGS:-}"
    [ -n "${HCLAB_VM_VERIFY_ARGS:-}" ] && printf 'HCLAB_VM_VERIFY_ARGS=%q\n' "$HCLAB_VM_VERIFY_ARGS"
    [ -n "${HCLAB_VM_VERIFY_BUILTIN:-}" ] && printf 'HCLAB_VM_VERIFY_BUILTIN=%q\n' "$HCLAB_VM_VERIFY_BUILTIN"
    echo "HCLAB_VM_HOST_TIME=$(date +%s)"
} > "$WORK/share/env"
if [ -n "${HCLAB_VM_PATCH:-}" ]; then
    # Try a change to the project in the VM only (e.g. a fix proposed for lab/), without
    # touching the working tree: a patch in `git diff` form, applied to the guest's copy.
    log "applying $HCLAB_VM_PATCH to the guest's copy of the project"
    patch -d "$WORK/share/src" -p1 --no-backup-if-mismatch < "$HCLAB_VM_PATCH" || die "the patch does not apply"
fi
qemu-img create -q -f qcow2 -F raw -b "$IMAGE" "$WORK/root.qcow2"

if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    if [ -c /dev/kvm ] && [ -w /dev/kvm ]; then
        # /dev/kvm may exist without running ordinary guests: boot this kernel with an init
        # that does not exist and look for the kernel getting as far as looking for init.
        probe=$(timeout 8 qemu-system-x86_64 -accel kvm -cpu host -m 256 -smp 1 -nodefaults \
            -display none -no-reboot -serial stdio -kernel "$CACHE/vmlinuz-$K3" \
            -append "console=ttyS0 panic=-1 root=/dev/nonexistent rootwait=0 init=/none" \
            </dev/null 2>&1 | tr -d '\r' | grep -c 'Linux version' || true)
        [ "${probe:-0}" -ge 1 ] && ACCEL=kvm
    fi
fi
# shellcheck disable=SC2054  # (commas inside QEMU options)
if [ "$ACCEL" = kvm ]; then accel=(-accel kvm -cpu host); else accel=(-accel tcg,thread=multi,tb-size=512 -cpu max); fi

# Under TCG the guest's timing depends on getting its host cores: other load on the host
# shows up as netem RTT error in the guest, so the load is reported next to the results.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "booting the VM ($ACCEL, $CPUS CPUs, $MEMORY MB, timeout $TIMEOUT s; host load $load_before)"
t_boot=$(date +%s)
: > "$WORK/console.log"
qemu-system-x86_64 "${accel[@]}" -M q35 -smp "$CPUS" -m "$MEMORY" \
    -nodefaults -display none -no-reboot -monitor none \
    -kernel "$CACHE/vmlinuz-$K3" -initrd "$CACHE/initrd-$K3" \
    -append "console=ttyS0,115200 root=/dev/vda rw rootfstype=ext4 init=/sbin/hclab-init panic=-1 quiet loglevel=3 net.ifnames=0 mitigations=off" \
    -drive file="$WORK/root.qcow2",if=virtio,format=qcow2,cache=unsafe,discard=unmap \
    -virtfs local,path="$WORK/share",mount_tag=hclab,security_model=none,id=hclab \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    -device virtio-rng-pci \
    -chardev file,id=con,path="$WORK/console.log" -serial chardev:con \
    </dev/null >"$WORK/qemu.log" 2>&1 &
QEMU_PID=$!
tail -n +1 -f --pid="$QEMU_PID" "$WORK/console.log" &
TAIL_PID=$!

status=""
while kill -0 "$QEMU_PID" 2>/dev/null; do
    if [ $(( $(date +%s) - t_boot )) -ge "$TIMEOUT" ]; then
        log "timeout after $TIMEOUT s: killing QEMU"
        kill "$QEMU_PID" 2>/dev/null || true; sleep 2; kill -9 "$QEMU_PID" 2>/dev/null || true
        status=124
        break
    fi
    sleep 1
done
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=""
sleep 0.5
kill "$TAIL_PID" 2>/dev/null || true
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=""
vm_s=$(( $(date +%s) - t_boot ))
grep -v -E '^$' "$WORK/qemu.log" | grep -v 'pni \[bit 0\]' >&2 || true

echo
echo "================ hclab VM results ================"
out=$WORK/share/out
[ -f "$out/doctor.txt" ] && { echo "--- lab doctor"; cat "$out/doctor.txt"; }
for v in verify verify-builtin; do
    [ -f "$out/$v.txt" ] && { echo "--- $v: lab verify (the table is above)"; grep -E '^(bringing up|up in|measuring|PASS|FAIL|report)' "$out/$v.txt" || tail -3 "$out/$v.txt"; }
done
[ -f "$out/pytest-summary.txt" ] && { echo "--- pytest"; cat "$out/pytest-summary.txt"; }
for v in verify verify-builtin; do
    [ -f "$out/$v.json" ] && echo "--- $v.json: $(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("backend", d.get("backend"), "datapath", d.get("datapath"), "pass", d.get("pass"), len(d.get("links", [])), "links", len(d.get("paths", [])), "paths, path error |median|", d.get("median_abs_path_error_ms"), "ms, max", d.get("max_abs_path_error_ms"), "ms, unanswered pairs", sum(1 for r in d.get("links", []) + d.get("paths", []) if not r.get("n")))' "$out/$v.json" 2>/dev/null)"
done
[ -f "$out/status" ] && { echo "--- status"; cat "$out/status"; }
if [ -z "$status" ]; then
    status=$(sed -n 's/^rc=//p' "$out/status" 2>/dev/null || true)
    if [ -z "$status" ]; then
        status=$(grep -a -o -E 'HCLAB-VM-EXIT [0-9]+' "$WORK/console.log" | tail -1 | cut -d' ' -f2 || true)
    fi
    status=${status:-3}
fi
if [ -n "${HCLAB_VM_OUT:-}" ]; then
    mkdir -p "$HCLAB_VM_OUT"
    cp -a "$out/." "$HCLAB_VM_OUT/"
    cp "$WORK/console.log" "$HCLAB_VM_OUT/console.log"
    echo "results kept in $HCLAB_VM_OUT"
fi
log "host load average before the VM: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
log "VM ran $vm_s s ($ACCEL); total $(( $(date +%s) - T0 )) s; status $status"
exit "$status"
