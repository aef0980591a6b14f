#!/bin/sh
# PID 1 of the test VM (installed as /sbin/hclab-init by tests/vm/run.sh): mounts the
# basics and the 9p share, hands over to the share's tests/vm/guest.sh, powers off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# (the initramfs has moved /proc, /sys and /dev over already; mount what is missing)
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
modprobe -q 9pnet_virtio
mkdir -p /mnt/hclab
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose hclab /mnt/hclab \
   && [ -f /mnt/hclab/src/tests/vm/guest.sh ]; then
    /bin/bash /mnt/hclab/src/tests/vm/guest.sh
    echo "HCLAB-VM-EXIT $?"
else
    echo "HCLAB-VM-EXIT 3 (the 9p share did not mount)"
fi
sync
umount /mnt/hclab 2>/dev/null
echo o > /proc/sysrq-trigger
sleep 30
