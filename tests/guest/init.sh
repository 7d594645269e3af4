#!/bin/sh
# /init of the guest tier's initramfs, used by both kernels:
# - in the crash kernel (/proc/vmcore exists) it reports the dump's ELF header and powers off;
# - in the first kernel it loads the virtio modules and runs one shell command per console line,
#   answering `@@ DONE <status>` after each, which is how tests/guest.rs drives it.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
if [ -e /proc/vmcore ]; then
    guest-tools report-vmcore
    poweroff -f
fi
while read -r module; do
    insmod "/lib/modules/$module" || echo "@@ ERROR insmod $module"
done < /lib/modules/load-order
# Commands read from the console must not come back as echoed input.
stty -echo 2>/dev/null
echo "@@ READY kernel=$(uname -r) cpus=$(cat /sys/devices/system/cpu/online)"
while read -r line; do
    # In a subshell: an `exit` in a command must not end PID 1 (that panics the kernel).
    (eval "$line")
    echo "@@ DONE $?"
done
echo "@@ CONSOLE-CLOSED"
poweroff -f
