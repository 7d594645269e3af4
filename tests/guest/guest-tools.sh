#!/bin/sh
# Helpers the harness calls inside the guest (busybox sh). Logs go to /run, one line per fact, each
# stamped with /proc/uptime's first field (seconds since boot, 10 ms resolution).
CRASH_KERNEL=/boot/vmlinuz
CRASH_INITRD=/boot/initrd.img
# The crash kernel needs only one CPU; irqpoll and reset_devices as distributions pass them.
CRASH_CMDLINE="console=ttyS0 loglevel=3 nr_cpus=1 irqpoll reset_devices panic=-1"

uptime_now() { read -r up _ < /proc/uptime; echo "$up"; }

case "$1" in
report-vmcore)
    # The ELF header (and the notes right after it) fit in the first 64 KiB of /proc/vmcore.
    echo "@@ VMCORE-SIZE $(stat -c %s /proc/vmcore)"
    echo "@@ VMCORE-HEADER-BEGIN"
    head -c 65536 /proc/vmcore | base64
    echo "@@ VMCORE-HEADER-END"
    ;;
iomem)
    echo "@@ IOMEM-BEGIN"
    cat /proc/iomem
    echo "@@ IOMEM-END"
    ;;
load-crash)
    # Stand-in loader (NOT the daemon): kexec_file_load of the crash kernel, as kdump-tools does.
    kexec -s -p "$CRASH_KERNEL" --initrd="$CRASH_INITRD" --append="$CRASH_CMDLINE"
    ;;
crash-cmdline)
    echo "$CRASH_CMDLINE"
    ;;
watch-loaded)
    # Every change of kexec_crash_loaded, polled every 2 ms: the windows with no crash kernel loaded.
    previous=none
    while :; do
        read -r loaded < /sys/kernel/kexec_crash_loaded
        if [ "$loaded" != "$previous" ]; then
            echo "$(uptime_now) $loaded" >> /run/loaded.log
            previous=$loaded
        fi
        usleep 2000
    done
    ;;
log-uevents)
    # busybox `uevent` runs the handler once per kernel uevent, in order.
    exec uevent /bin/guest-tools uevent-logged
    ;;
uevent-logged)
    echo "$(uptime_now) $ACTION $SUBSYSTEM $DEVPATH" >> /run/uevents.log
    ;;
reload-per-event)
    # The baseline: what Debian's kdump-tools udev rule does, one full reload per memory online/offline and
    # CPU add/remove/online event, one at a time.
    exec uevent /bin/guest-tools reload-on-event
    ;;
reload-on-event)
    case "$SUBSYSTEM:$ACTION" in
    memory:online|memory:offline|cpu:add|cpu:remove|cpu:online) ;;
    *) exit 0 ;;
    esac
    started=$(uptime_now)
    kexec -s -p "$CRASH_KERNEL" --initrd="$CRASH_INITRD" --append="$CRASH_CMDLINE"
    echo "$started $(uptime_now) $? $ACTION $DEVPATH" >> /run/baseline-reloads.log
    ;;
settle)
    # Waits until, for $2 seconds, no uevent arrived and kexec_crash_loaded did not change (reloads still
    # running are part of the burst), and no memory block is offline; gives up after $3 s.
    quiet=$2 limit=$3 waited=0 last=-1 still=0
    while [ "$waited" -lt "$limit" ]; do
        count=$(cat /run/uevents.log /run/loaded.log 2>/dev/null | wc -l)
        offline=$(cat /sys/devices/system/memory/memory*/state | grep -c offline)
        if [ "$count" = "$last" ] && [ "$offline" = 0 ]; then
            still=$((still + 1))
            [ "$still" -ge "$quiet" ] && { echo "@@ SETTLED log-lines=$count"; exit 0; }
        else
            still=0
        fi
        last=$count
        sleep 1
        waited=$((waited + 1))
    done
    echo "@@ NOT-SETTLED log-lines=$count offline=$offline"
    exit 1
    ;;
start-daemon)
    # The daemon as a service would run it, its log in /run/daemon.log; extra arguments are passed on.
    shift
    kdump-hotplugd run --kernel "$CRASH_KERNEL" --initrd "$CRASH_INITRD" --cmdline "$CRASH_CMDLINE" "$@" \
        </dev/null >/run/daemon.log 2>&1 &
    echo $! > /run/daemon.pid
    ;;
daemon-status)
    # The daemon's last published status line (it logs every change).
    # Only summary lines ("idle: ranges 3, crash kernel loaded, …"); other status lines carry the reason.
    echo "@@ STATUS $(grep -E ' (status|READY): [a-z]+( \(paused\))?: ranges [0-9]+, ' /run/daemon.log | tail -n 1 \
        | sed 's/.* \(status\|READY\): //')"
    ;;
slow-load)
    # A slow loader for the storm scenario: waits $2 seconds, then loads like kexec-tools.
    sleep "$2"
    kexec -s -p "$CRASH_KERNEL" --initrd="$CRASH_INITRD" --append="$CRASH_CMDLINE"
    ;;
online-cpus)
    # What a udev rule does for hot-added CPUs: bring each one online.
    for cpu in /sys/devices/system/cpu/cpu[0-9]*; do
        [ -f "$cpu/online" ] && [ "$(cat "$cpu/online")" = 0 ] && echo 1 > "$cpu/online"
    done
    echo "@@ CPUS $(cat /sys/devices/system/cpu/online)"
    ;;
dump-log)
    echo "@@ LOG-BEGIN $2"
    cat "$2" 2>/dev/null
    echo "@@ LOG-END $2"
    ;;
*)
    echo "guest-tools: unknown command $1" >&2
    exit 2
    ;;
esac
