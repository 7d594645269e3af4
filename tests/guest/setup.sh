#!/usr/bin/env bash
# Setup for the QEMU guest tier (tests/guest.rs). Idempotent; everything slow is cached outside the repo.
#
#   setup.sh host                      install the host packages the guests need (apt-get, as root)
#   setup.sh kernel FLAVOUR            fetch and unpack a Debian kernel (6.1 or 6.12) into the cache, with its
#                                      virtio modules decompressed, or build the small-buffer kernel (custom)
#                                      from Debian's linux-source-6.12; prints the kernel's directory
#   setup.sh initramfs FLAVOUR DAEMON OUT
#                                      build OUT/crash.cpio (busybox, /init, kexec, modules, the daemon) and
#                                      OUT/boot.cpio (crash.cpio + the kernel and crash.cpio itself under /boot)
#
# Cache: $KDUMP_HOTPLUGD_GUEST_CACHE, default /var/tmp/kdump-hotplugd-guest.
set -euo pipefail

CACHE=${KDUMP_HOTPLUGD_GUEST_CACHE:-/var/tmp/kdump-hotplugd-guest}
HERE=$(cd "$(dirname "$0")" && pwd)
HOST_PACKAGES=(qemu-system-x86 busybox-static kexec-tools cpio kmod xz-utils zstd)

log() { echo "guest-setup: $*" >&2; }

apt_install_missing() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2; }
}

# The newest package of each flavour that this machine's apt sources offer: versions come and go in the
# archive, so the names are resolved here, not pinned.
kernel_package() {
    case "$1" in
        6.1)  apt-cache depends linux-image-amd64 2>/dev/null \
                  | awk '/Depends: linux-image-6\.1\.[0-9]+-[0-9]+-amd64$/ {print $2; exit}' ;;
        6.12) apt-cache pkgnames linux-image-6.12. 2>/dev/null \
                  | grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' | sort -V | tail -n 1 ;;
        *) log "unknown kernel flavour $1 (6.1 or 6.12)"; exit 2 ;;
    esac
}

# The small-buffer kernel: Debian's linux-source-6.12, `make tinyconfig` plus custom-kernel.config (a
# uniprocessor kernel whose crash header holds CRASH_MAX_MEMORY_RANGES ranges). Built once, cached.
build_custom_kernel() {
    local dir="$CACHE/kernel-custom" src="$CACHE/src"
    if [ -f "$dir/ready" ] && cmp -s "$HERE/custom-kernel.config" "$dir/custom-kernel.config"; then
        echo "$dir"; return
    fi
    apt_install_missing build-essential bc bison flex libelf-dev libssl-dev
    mkdir -p "$src" && chmod 0777 "$src"
    if [ ! -f "$src/linux-source-6.12/Makefile" ]; then
        log "fetching linux-source-6.12"
        rm -rf "$src"/linux-source-6.12*
        (cd "$src" && apt-get download -q linux-source-6.12 >&2)
        dpkg-deb --fsys-tarfile "$src"/linux-source-6.12_*.deb \
            | tar -xO ./usr/src/linux-source-6.12.tar.xz | tar -xJ -C "$src"
        rm -f "$src"/linux-source-6.12_*.deb
    fi
    local tree="$src/linux-source-6.12" build="$src/build-custom"
    mkdir -p "$build"
    make -s -C "$tree" O="$build" tinyconfig >&2
    "$tree/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$HERE/custom-kernel.config" >&2
    make -s -C "$tree" O="$build" olddefconfig >&2
    # Kconfig drops options whose dependencies are missing without a word: check that each one landed.
    local missing
    missing=$(grep -E '^CONFIG_' "$HERE/custom-kernel.config" | while read -r option; do
        grep -qx "$option" "$build/.config" || echo "$option"; done)
    [ -z "$missing" ] || { log "options not set in the custom kernel: $missing"; exit 1; }
    log "building the custom kernel ($(nproc) jobs; a few minutes, once)"
    make -s -C "$tree" O="$build" -j"$(nproc)" bzImage >&2
    rm -rf "$dir" && mkdir -p "$dir/modules"
    : > "$dir/modules/load-order"
    cp "$build/arch/x86/boot/bzImage" "$dir/vmlinuz"
    cp "$build/.config" "$dir/config"
    cp "$HERE/custom-kernel.config" "$dir/custom-kernel.config"
    make -s -C "$tree" O="$build" kernelrelease > "$dir/version"
    touch "$dir/ready"
    echo "$dir"
}

fetch_kernel() {
    local flavour=$1 dir="$CACHE/kernel-$1"
    if [ "$flavour" = custom ]; then build_custom_kernel; return; fi
    if [ -f "$dir/ready" ]; then echo "$dir"; return; fi
    local package
    package=$(kernel_package "$flavour")
    if [ -z "$package" ]; then
        apt-get update -qq >&2
        package=$(kernel_package "$flavour")
    fi
    [ -n "$package" ] || { log "no kernel package for $flavour in the apt sources (6.12 needs bookworm-security)"; exit 1; }
    log "fetching $package"
    rm -rf "$dir" && mkdir -p "$dir/debs"
    # apt-get download drops privileges to _apt for the transfer: give it a folder it may write.
    chmod 0777 "$dir/debs"
    (cd "$dir/debs" && apt-get download -q "$package" >&2)
    dpkg -x "$dir"/debs/*.deb "$dir/root"
    local kver
    kver=$(ls "$dir/root/lib/modules")
    cp "$dir/root/boot/vmlinuz-$kver" "$dir/vmlinuz"
    cp "$dir/root/boot/config-$kver" "$dir/config"
    depmod -b "$dir/root" "$kver"
    # virtio_pci finds the device, virtio_mem drives it; both may be modules, each with dependencies.
    mkdir -p "$dir/modules"
    : > "$dir/modules/load-order"
    for module in virtio_pci virtio_mem; do
        modprobe --show-depends -d "$dir/root" -S "$kver" "$module" | while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            local name
            name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}
            grep -qx "$name" "$dir/modules/load-order" && continue
            case "$path" in
                *.xz) xz -dc "$path" > "$dir/modules/$name" ;;
                *.zst) zstd -qdc "$path" > "$dir/modules/$name" ;;
                *) cp "$path" "$dir/modules/$name" ;;
            esac
            echo "$name" >> "$dir/modules/load-order"
        done
    done
    echo "$kver" > "$dir/version"
    rm -rf "$dir/root" "$dir/debs"
    touch "$dir/ready"
    log "$flavour: $kver, modules: $(tr '\n' ' ' < "$dir/modules/load-order")"
    echo "$dir"
}

# Copies a dynamically linked program and every library ldd names into the tree, at the same paths.
copy_with_libraries() {
    local root=$1 program=$2 destination=$3
    install -D -m0755 "$program" "$root$destination"
    ldd "$program" | grep -oE '/[^ ]+' | while read -r library; do
        [ -e "$root$library" ] || install -D -m0755 "$(readlink -f "$library")" "$root$library"
    done
}

build_initramfs() {
    local flavour=$1 daemon=$2 out=$3
    local kernel_dir
    kernel_dir=$(fetch_kernel "$flavour")
    rm -rf "$out" && mkdir -p "$out"
    local root="$out/root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,boot,etc/kdump-hotplugd,lib/modules,var/log}
    install -m0755 /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    copy_with_libraries "$root" /sbin/kexec /sbin/kexec
    # Where the daemon's kexec-tools loader looks for it by default (loader.kexec_path).
    ln -s /sbin/kexec "$root/usr/sbin/kexec"
    copy_with_libraries "$root" "$daemon" /usr/sbin/kdump-hotplugd
    strip --strip-debug "$root/usr/sbin/kdump-hotplugd"
    cp "$kernel_dir"/modules/* "$root/lib/modules/"
    install -m0755 "$HERE/init.sh" "$root/init"
    install -m0755 "$HERE/guest-tools.sh" "$root/bin/guest-tools"
    # /dev/console must exist before devtmpfs is mounted, or /init starts without stdio.
    mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/crash.cpio"
    # The first kernel also carries the crash kernel's image and initrd (for kexec and the daemon's loader):
    # a second archive appended to the first, which the kernel unpacks over it.
    local extra="$out/extra"
    mkdir -p "$extra/boot"
    cp "$kernel_dir/vmlinuz" "$extra/boot/vmlinuz"
    cp "$out/crash.cpio" "$extra/boot/initrd.img"
    (cd "$extra" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/extra.cpio"
    cat "$out/crash.cpio" "$out/extra.cpio" > "$out/boot.cpio"
    cp "$kernel_dir/vmlinuz" "$out/vmlinuz"
    cp "$kernel_dir/version" "$out/version"
    rm -rf "$root" "$extra" "$out/extra.cpio"
    log "initramfs for $flavour: $(du -h "$out/boot.cpio" | cut -f1) (crash kernel's: $(du -h "$out/crash.cpio" | cut -f1))"
}

case "${1:-}" in
    host) apt_install_missing "${HOST_PACKAGES[@]}" ;;
    kernel) apt_install_missing "${HOST_PACKAGES[@]}"; fetch_kernel "$2" ;;
    initramfs) apt_install_missing "${HOST_PACKAGES[@]}"; build_initramfs "$2" "$3" "$4" ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
