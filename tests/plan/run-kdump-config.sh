#!/bin/sh
# Runs Debian's real kdump-config on a fixture sysroot: run-kdump-config.sh KDUMP_CONFIG FIXTURE MODE OUT
#
# MODE is `test` (its dry run: prints the kexec command it would run) or `load` (runs it: /sbin/kexec is a
# stand-in that records its arguments, NUL-separated, in OUT.argv). Output goes to OUT.stdout and OUT.stderr.
#
# kdump-config reads fixed paths (/etc/default/kdump-tools, /proc/cmdline, /sys/kernel/kexec_crash_loaded,
# /var/lib/kdump, `uname -r`), so it runs chrooted into a private mount namespace: a tmpfs holding a copy of
# the fixture, the host's /usr read-only (dash, sed, grep, file, lsb-base), and /bin with a `uname` that
# reports the fixture's release. Nothing outside the namespace changes. Needs root and unshare(1).
set -eu
script=$1 fixture=$2 mode=$3 out=$4
root=$(mktemp -d /tmp/kdump-config-root.XXXXXX)
trap 'rmdir "$root"' EXIT
unshare -m --propagation private sh -eu -c '
    root=$1 fixture=$2 script=$3 mode=$4 out=$5
    mount -t tmpfs tmpfs "$root"
    cp -a "$fixture"/. "$root"/
    rm -rf "$root/usr" "$root/bin" "$root/sbin" "$root/lib" "$root/lib64"
    mkdir -p "$root/usr" "$root/dev" "$root/tmp" "$root/bin" "$root/sbin" "$root/etc/kdump" "$root/opt"
    mount --bind /usr "$root/usr"
    mount -o remount,bind,ro "$root/usr"
    mount --bind /dev "$root/dev"
    ln -s usr/lib "$root/lib"
    ln -s usr/lib64 "$root/lib64"
    cp /etc/ld.so.cache "$root/etc/"
    release=$(cat "$fixture/proc/sys/kernel/osrelease")
    printf "#!/usr/bin/dash\ncase \"\$1\" in -r) echo %s;; -m) echo x86_64;; *) echo Linux;; esac\n" \
        "$release" >"$root/bin/uname"
    ln -s /usr/bin/dash "$root/bin/sh"
    printf "#!/usr/bin/dash\nfor a in \"\$@\"; do printf \"%%s\\\\0\" \"\$a\"; done >/tmp/kexec-argv\n" \
        >"$root/sbin/kexec"
    chmod +x "$root/bin/uname" "$root/sbin/kexec"
    cp "$script" "$root/opt/kdump-config"
    # The kdump initrd counts as up to date (check_sysctl_change would delete it otherwise).
    : >"$root/etc/kdump/sysctl.conf"
    [ ! -d "$root/var/lib/kdump" ] || : >"$root/var/lib/kdump/latest_sysctls-$release"
    # `load` re-links /var/lib/kdump only when no crash kernel is loaded (kdump_create_symlinks).
    [ "$mode" != load ] || echo 0 >"$root/sys/kernel/kexec_crash_loaded"
    status=0
    chroot "$root" /usr/bin/dash /opt/kdump-config "$mode" >"$out.stdout" 2>"$out.stderr" || status=$?
    echo "$status" >"$out.status"
    [ "$mode" != load ] || [ ! -e "$root/tmp/kexec-argv" ] || cp "$root/tmp/kexec-argv" "$out.argv"
    [ "$mode" != load ] || [ ! -e "$root/var/crash/kexec_cmd" ] || cp "$root/var/crash/kexec_cmd" "$out.record"
    umount -l "$root"
' sh "$root" "$fixture" "$script" "$mode" "$out"
