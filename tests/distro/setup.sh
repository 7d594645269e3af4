#!/usr/bin/env bash
# Setup for the real-distribution tier (tests/distro.rs): a Debian 12 system with systemd, udevd, D-Bus and
# kdump-tools, this project's .deb installed into it with dpkg, booted once so kdump-tools builds its initrds.
# Idempotent; every stage is cached under $KDUMP_HOTPLUGD_DISTRO_CACHE (default /var/tmp/kdump-hotplugd-distro)
# in a folder named after a hash of its inputs, so a new .deb rebuilds the disk but not the debootstrap root.
#
#   setup.sh host          install the host packages the tier needs (apt-get, as root)
#   setup.sh base          build (or find cached) the debootstrap root alone; prints its folder
#   setup.sh image [DEB]   build (or find cached) the booted disk image; DEB defaults to the one .deb under
#                          target/debian. Prints the image folder: disk.raw (after the first boots),
#                          vmlinuz-6.1, initrd-6.1, vmlinuz-6.12, initrd-6.12, versions, user, deb
#   setup.sh lintian [DEB] lintian on the .deb (the package lifecycle scenario's host side)
set -euo pipefail

CACHE=${KDUMP_HOTPLUGD_DISTRO_CACHE:-/var/tmp/kdump-hotplugd-distro}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MIRROR=${KDUMP_HOTPLUGD_DISTRO_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KDUMP_HOTPLUGD_DISTRO_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
# makedumpfile on the host: `makedumpfile -R` turns kdump-tools' flattened dump into a kdump-compressed file.
HOST_PACKAGES=(debootstrap qemu-system-x86 qemu-utils e2fsprogs makedumpfile lintian)
GUEST_PACKAGES=systemd-sysv,udev,dbus,kdump-tools,makedumpfile,kexec-tools,linux-image-amd64,procps,iproute2,e2fsprogs
# The unprivileged account of the D-Bus refusal check.
TEST_USER=kdtest
DISK_SIZE=6G
# The kernel command line, as tests/distro/system.rs boots it. no_timer_check: on a loaded host the emulated
# timer can miss the kernel's IO-APIC check ("IO-APIC + timer doesn't work!" panic at boot). No panic=: kdump-tools
# hands this command line on to the crash kernel, and with panic=-1 there the first run's crash boot ended with
# QEMU's exit and no dump; without it the same crash saved its dump.
CMDLINE="root=/dev/vda rw console=ttyS0 crashkernel=384M memhp_default_state=online_movable no_timer_check"

log() { echo "distro-setup: $*" >&2; }
die() { log "$*"; exit 1; }

apt_install_missing() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
}

# The newest 6.12 kernel this machine's apt sources offer (Debian 12 ships it through bookworm-security and
# bookworm-backports); resolved, not pinned, as tests/guest/setup.sh does.
kernel_612_package() {
    apt-cache pkgnames linux-image-6.12. 2>/dev/null \
        | grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' | sort -V | tail -n 1
}

# The key of a stage: a hash of everything that goes into it, including the text of the functions that build
# it (`declare -f`), so editing the recipe rebuilds it too.
key_of() { sha256sum | cut -c1-16; }

# --- Stage 1: the Debian root ------------------------------------------------------------------------------
configure_base() {
    local root=$1 kernel612=$2
    cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" apt-get update -qq >&2
    # kdump-tools' kernel hook would build its initrd for the new kernel, which needs a mounted sysfs: it is
    # switched off for the install (run-parts skips files that are not executable) and built at the first boot.
    chmod -x "$root/etc/kernel/postinst.d/kdump-tools"
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends "$kernel612" >&2
    chmod +x "$root/etc/kernel/postinst.d/kdump-tools"
    chroot "$root" apt-get clean
    chroot "$root" passwd -d root >/dev/null
    chroot "$root" useradd --create-home --shell /bin/bash "$TEST_USER"
    echo "/dev/vda / ext4 rw 0 1" > "$root/etc/fstab"
    echo kdump-distro > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 kdump-distro\n' > "$root/etc/hosts"
    # The console is a root shell: the harness types commands there.
    mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
    cat > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I dumb
EOF
    # The first boot of each kernel (kernel command line token kdump_hotplugd_firstboot only): wait for
    # kdump-tools to have built its initrd and loaded the crash kernel, report, power off. Inert otherwise.
    cat > "$root/etc/systemd/system/distro-tier-firstboot.service" <<'EOF'
[Unit]
Description=kdump-hotplugd distro test tier: report the first boot and power off
ConditionKernelCommandLine=kdump_hotplugd_firstboot
After=kdump-tools.service kdump-hotplugd.service

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/console
ExecStart=/bin/sh -c 'echo "@@ FIRSTBOOT $(uname -r) loaded=$(cat /sys/kernel/kexec_crash_loaded) $(kdump-config status 2>&1 | tr "\\n" " ")"; ls -l /var/lib/kdump'
ExecStartPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
EOF
    chroot "$root" systemctl enable distro-tier-firstboot.service >&2
}

# Stage 1a, the slow part alone (minutes of downloads): debootstrap, keyed on the suite, mirror and packages.
build_debootstrap() {
    local key dir
    key=$(echo "$SUITE $MIRROR $GUEST_PACKAGES" | key_of)
    dir=$CACHE/debootstrap-$key
    if [ -f "$dir/ready" ]; then echo "$dir"; return; fi
    rm -rf "$CACHE"/debootstrap-*
    mkdir -p "$dir"
    log "debootstrap $SUITE (minbase + ${GUEST_PACKAGES}) into $dir (a few minutes, once)"
    local started=$SECONDS
    debootstrap --variant=minbase --include="$GUEST_PACKAGES" "$SUITE" "$dir/root" "$MIRROR" > "$dir/debootstrap.log" 2>&1 \
        || { tail -20 "$dir/debootstrap.log" >&2; die "debootstrap failed (log: $dir/debootstrap.log)"; }
    touch "$dir/ready"
    log "debootstrap: $((SECONDS - started)) s"
    echo "$dir"
}

# Stage 1b: a copy of that root, configured, with the 6.12 kernel.
build_base() {
    local kernel612 key dir bootstrap
    bootstrap=$(build_debootstrap)
    kernel612=$(kernel_612_package)
    if [ -z "$kernel612" ]; then apt-get update -qq >&2; kernel612=$(kernel_612_package); fi
    [ -n "$kernel612" ] || die "no linux-image-6.12.*+deb12-amd64 in the host's apt sources (bookworm-security)"
    key=$( { basename "$bootstrap"; echo "$SECURITY_MIRROR $kernel612 $TEST_USER"; declare -f configure_base; } | key_of)
    dir=$CACHE/base-$key
    if [ -f "$dir/ready" ]; then echo "$dir"; return; fi
    rm -rf "$CACHE"/base-*
    mkdir -p "$dir"
    local started=$SECONDS
    cp -a "$bootstrap/root" "$dir/root"
    configure_base "$dir/root" "$kernel612"
    echo "$kernel612" > "$dir/kernel612"
    touch "$dir/ready"
    log "base root ready in $((SECONDS - started)) s"
    echo "$dir"
}

# --- Stage 2: the disk with the .deb, booted once per kernel -----------------------------------------------
find_deb() {
    local debs=("$REPO"/target/debian/kdump-hotplugd_*.deb)
    [ -e "${debs[0]}" ] || die "no .deb under $REPO/target/debian: run make packages first (or pass its path)"
    [ ${#debs[@]} -eq 1 ] || die "several .debs under $REPO/target/debian (${debs[*]}): pass one"
    echo "${debs[0]}"
}

install_deb() {
    local root=$1 deb=$2
    cp "$deb" "$root/tmp/kdump-hotplugd.deb"
    # dpkg, not a file copy: the maintainer scripts enable the unit as on a user's machine. No systemd runs in
    # the chroot (/run/systemd/system is absent), so nothing is started.
    chroot "$root" dpkg -i /tmp/kdump-hotplugd.deb >&2
    rm -f "$root/tmp/kdump-hotplugd.deb"
    # Kept in the image for the package lifecycle scenario's reinstall.
    cp "$deb" "$root/root/kdump-hotplugd.deb"
}

# One boot of the raw disk with the first-boot token; kdump-tools builds /var/lib/kdump/initrd.img-<ver>.
first_boot() {
    local dir=$1 flavour=$2 started=$SECONDS
    local log=$dir/firstboot-$flavour.log
    timeout 1200 qemu-system-x86_64 -accel tcg,thread=multi -machine q35 -cpu max -smp 2 -m 2G \
        -drive "file=$dir/disk.raw,format=raw,if=virtio" \
        -kernel "$dir/vmlinuz-$flavour" -initrd "$dir/initrd-$flavour" \
        -append "$CMDLINE kdump_hotplugd_firstboot" \
        -display none -vga none -monitor none -serial "file:$log" -no-reboot \
        || die "first boot of $flavour failed or timed out (console: $log)"
    grep -a '@@ FIRSTBOOT' "$log" >&2 || die "first boot of $flavour did not report (console: $log)"
    grep -a '@@ FIRSTBOOT' "$log" | grep -q 'loaded=1' \
        || die "first boot of $flavour: kdump-tools left no crash kernel loaded (console: $log)"
    log "first boot of $flavour: $((SECONDS - started)) s"
}

build_disk() {
    local base=$1 deb=$2 key dir
    key=$( { basename "$base"; sha256sum < "$deb"; echo "$DISK_SIZE"; declare -f install_deb first_boot build_disk; } | key_of)
    dir=$CACHE/disk-$key
    if [ -f "$dir/ready" ]; then echo "$dir"; return; fi
    rm -rf "$CACHE"/disk-*
    mkdir -p "$dir"
    local started=$SECONDS root=$dir/root
    cp -a "$base/root" "$root"
    install_deb "$root" "$deb"
    local v61 v612
    v612=$(sed 's/^linux-image-//' "$base/kernel612")
    v61=$(ls "$root/lib/modules" | grep -v "^$v612\$" | sort -V | tail -n 1)
    cp "$root/boot/vmlinuz-$v61" "$dir/vmlinuz-6.1"
    cp "$root/boot/initrd.img-$v61" "$dir/initrd-6.1"
    cp "$root/boot/vmlinuz-$v612" "$dir/vmlinuz-6.12"
    cp "$root/boot/initrd.img-$v612" "$dir/initrd-6.12"
    printf '6.1 %s\n6.12 %s\n' "$v61" "$v612" > "$dir/versions"
    echo "$TEST_USER" > "$dir/user"
    sha256sum < "$deb" | cut -d' ' -f1 > "$dir/deb"
    # No mount: the file system is written from the directory tree.
    # stdout carries only the folder this script prints: mkfs reports "Creating regular file" there.
    mkfs.ext4 -q -F -d "$root" -L root "$dir/disk.raw" "$DISK_SIZE" >&2
    rm -rf "$root"
    log "disk image with the .deb: $((SECONDS - started)) s"
    first_boot "$dir" 6.1
    first_boot "$dir" 6.12
    touch "$dir/ready"
    log "disk ready in $((SECONDS - started)) s: $dir"
    echo "$dir"
}

case "${1:-}" in
    host) apt_install_missing "${HOST_PACKAGES[@]}" ;;
    base) apt_install_missing "${HOST_PACKAGES[@]}"; mkdir -p "$CACHE"; build_base ;;
    image)
        apt_install_missing "${HOST_PACKAGES[@]}"
        deb=${2:-$(find_deb)}
        [ -f "$deb" ] || die "$deb: no such .deb"
        mkdir -p "$CACHE"
        base=$(build_base)
        build_disk "$base" "$(readlink -f "$deb")"
        ;;
    lintian)
        apt_install_missing lintian
        deb=${2:-$(find_deb)}
        lintian --info --display-info "$deb"
        ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
esac
