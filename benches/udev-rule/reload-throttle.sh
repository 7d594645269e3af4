#!/bin/sh
# The approach users have today, written for the benchmark: a udev rule runs this once per memory or CPU
# uevent (see 99-kdump-reload-throttle.rules), with the uevent's properties in the environment. Each run
# serialises on a lock and decides whether a reload is already scheduled; the first event of a burst schedules
# one. It is the cheapest form of the pattern: a real throttler then waits for the events to settle and runs the
# distro's reload in the background, which costs more again.
#
# KDUMP_THROTTLE_DIR: where the lock and the markers live (the benchmark passes a temporary directory).

case "$SUBSYSTEM" in
memory | cpu) ;;
*) exit 0 ;;
esac
case "$ACTION" in
add | remove | online | offline) ;;
*) exit 0 ;;
esac

state_dir=${KDUMP_THROTTLE_DIR:-/run/kdump-reload-throttle}

# udev handles events of different devices in parallel: one instance at a time past this point.
exec 9>>"$state_dir/lock"
flock 9 || exit 1

echo "$SEQNUM" >"$state_dir/last-event"
# A reload is already waiting for this burst to settle: it will cover this event too.
if [ -e "$state_dir/reload-pending" ]; then
    exit 0
fi
: >"$state_dir/reload-pending"
# Here a real throttler would start, in the background, "wait until quiet, then reload the crash kernel, then
# remove reload-pending". The benchmark records the decision instead.
echo "$SEQNUM $ACTION $DEVPATH" >>"$state_dir/reloads-scheduled"
