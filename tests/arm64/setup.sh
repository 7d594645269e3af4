#!/usr/bin/env bash
# The arm64 build and guest tier's setup. Idempotent; everything slow is cached outside the repo.
#
#   setup.sh chroot              make (once) the Debian 13 "trixie" chroot with Debian's rustc/cargo 1.85, the
#                                arm64 standard library, the aarch64 cross compiler and libudev-dev:arm64
#   setup.sh build [CARGO ARGS]  run `cargo ARGS` on this tree inside the chroot (default: the arm64 release
#                                build); the target dir is target/arm64 (cross) or target/rust-1.85 (native)
#   setup.sh deb-depends DEB     set the Depends of an arm64 .deb that cargo-deb built on this host (where
#                                its $auto finds no arm64 libraries) to dpkg-shlibdeps' answer in the chroot
#   setup.sh host                install the host packages the arm64 guests need (QEMU 10 from
#                                bookworm-backports, UEFI firmware, cpio, …)
#   setup.sh guest-parts         fetch and unpack the arm64 kernel, busybox and kexec-tools (prints the folder)
#   setup.sh initramfs DAEMON OUT
#                                build OUT/crash.cpio and OUT/boot.cpio as tests/guest/setup.sh does, with arm64
#                                parts; DAEMON may be "none" (the control scenario has no daemon)
#
# Cache: $KDUMP_HOTPLUGD_ARM64_CACHE, default /var/tmp/kdump-hotplugd-arm64.
set -euo pipefail

CACHE=${KDUMP_HOTPLUGD_ARM64_CACHE:-/var/tmp/kdump-hotplugd-arm64}
CHROOT=$CACHE/trixie
HERE=$(cd "$(dirname "$0")" && pwd)
GUEST=$HERE/../guest
TREE=$(cd "$HERE/../.." && pwd)
MIRROR=${KDUMP_HOTPLUGD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARGET=aarch64-unknown-linux-gnu
# What the chroot must hold: Debian's Rust (1.85 in trixie) for both architectures, the cross linker, and the
# one C library the daemon links (libudev, through the udev crate's pkg-config lookup).
CHROOT_PACKAGES=(rustc cargo libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    binutils-aarch64-linux-gnu libudev-dev:arm64 libudev-dev pkgconf ca-certificates gcc libc6-dev dpkg-dev)

log() { echo "arm64-setup: $*" >&2; }

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

# --- The trixie chroot ------------------------------------------------------------------------------

make_chroot() {
    if [ -f "$CHROOT/.ready" ] && [ "$(cat "$CHROOT/.ready")" = "${CHROOT_PACKAGES[*]}" ]; then
        return 0
    fi
    apt_install_missing debootstrap
    local started=$SECONDS
    if [ ! -x "$CHROOT/usr/bin/apt-get" ]; then
        log "debootstrap trixie into $CHROOT (once; a few minutes)"
        rm -rf "$CHROOT" && mkdir -p "$CACHE"
        debootstrap --variant=minbase trixie "$CHROOT" "$MIRROR" >&2
    fi
    # The chroot resolves crates.io with the host's resolver.
    cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
    in_chroot dpkg --add-architecture arm64
    in_chroot apt-get update -qq
    DEBIAN_FRONTEND=noninteractive in_chroot apt-get install -y -qq --no-install-recommends "${CHROOT_PACKAGES[@]}" >&2
    echo "${CHROOT_PACKAGES[*]}" > "$CHROOT/.ready"
    log "chroot ready in $((SECONDS - started))s: $(in_chroot rustc --version), $(in_chroot cargo --version)"
}

# Runs a command in the chroot with /proc, /dev, this tree (at /src) and the cargo cache mounted. Unmounts only
# what this call mounted, so two calls may overlap (a build and a package download).
in_chroot() {
    mkdir -p "$CHROOT/src" "$CHROOT/cargo-home" "$CACHE/cargo-home"
    local mounted=() mount
    mountpoint -q "$CHROOT/proc" || { mount -t proc proc "$CHROOT/proc" && mounted+=(proc); }
    mountpoint -q "$CHROOT/dev" || { mount --rbind /dev "$CHROOT/dev" && mounted+=(dev); }
    mountpoint -q "$CHROOT/src" || { mount --bind "$TREE" "$CHROOT/src" && mounted+=(src); }
    mountpoint -q "$CHROOT/cargo-home" || { mount --bind "$CACHE/cargo-home" "$CHROOT/cargo-home" && mounted+=(cargo-home); }
    # crates.io is reached through whatever the host trusts (a proxy's CA may be among it).
    cp /etc/ssl/certs/ca-certificates.crt "$CHROOT/etc/ssl/host-ca-certificates.crt"
    local status=0
    chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        CARGO_HOME=/cargo-home CARGO_HTTP_CAINFO=/etc/ssl/host-ca-certificates.crt \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        PKG_CONFIG_ALLOW_CROSS=1 \
        PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
        "$@" || status=$?
    for mount in "${mounted[@]}"; do
        umount -R "$CHROOT/$mount"
    done
    return $status
}

# --- The host's parts for the arm64 guests ----------------------------------------------------------

BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.sources
# QEMU 10 (bookworm-backports) emulates the virt machine's ACPI memory hotplug and virtio-mem on arm64;
# bookworm's own 7.2 has no virtio-mem on arm64. The firmware makes the guest boot through UEFI, which is
# what hands it ACPI tables (with -kernel alone it gets a device tree and no memory hotplug).
host_setup() {
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports to the apt sources ($BACKPORTS_LIST)"
        printf '%s\n' 'Types: deb' "URIs: $MIRROR" 'Suites: bookworm-backports' 'Components: main' \
            'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$BACKPORTS_LIST"
        apt-get update -qq >&2
    fi
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "adding the arm64 architecture to dpkg (for apt-get download of arm64 packages only)"
        dpkg --add-architecture arm64
        apt-get update -qq >&2
    fi
    apt_install_missing cpio xz-utils zstd binutils binutils-aarch64-linux-gnu kmod
    local qemu_version
    qemu_version=$(dpkg-query -W -f='${Version}' qemu-system-arm 2>/dev/null || true)
    case "$qemu_version" in
        1:10.*|1:1[1-9].*) ;;
        *)
            log "installing qemu-system-arm from bookworm-backports (installed: ${qemu_version:-none})"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -t bookworm-backports qemu-system-arm qemu-efi-aarch64 >&2
            ;;
    esac
    apt_install_missing qemu-efi-aarch64
    [ -f "$(firmware)" ] || { log "no UEFI firmware at $(firmware)"; exit 1; }
}

firmware() { echo /usr/share/qemu-efi-aarch64/QEMU_EFI.fd; }

# The newest bookworm arm64 kernel linux-image-arm64 depends on (the name changes with each ABI).
kernel_package() {
    apt-cache depends linux-image-arm64:arm64 2>/dev/null \
        | awk '/Depends: linux-image-6\.1\.[0-9]+-[0-9]+-arm64/ {sub(/:arm64$/, "", $2); print $2; exit}'
}

# Everything the guests run, unpacked from Debian's arm64 packages into $CACHE/parts: the kernel (bookworm's
# linux-image-arm64, an uncompressed Image for QEMU and kexec), its virtio modules, and busybox, kexec-tools
# and the shared libraries from trixie (the same release the daemon is built against, so one glibc serves both).
guest_parts() {
    local dir=$CACHE/parts
    if [ -f "$dir/ready" ]; then echo "$dir"; return; fi
    host_setup
    make_chroot
    local started=$SECONDS
    rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/modules"
    chmod 0777 "$dir/debs"
    local package
    package=$(kernel_package)
    [ -n "$package" ] || { apt-get update -qq >&2; package=$(kernel_package); }
    [ -n "$package" ] || { log "no arm64 kernel package behind linux-image-arm64 in the apt sources"; exit 1; }
    log "fetching $package:arm64"
    (cd "$dir/debs" && apt-get download -q "$package:arm64" >&2)
    dpkg -x "$dir"/debs/linux-image-*.deb "$dir/kernel-root"
    local kver
    kver=$(ls "$dir/kernel-root/lib/modules")
    # Debian's arm64 vmlinuz is a gzip'd Image; kexec_file_load on arm64 takes only the plain Image.
    if gzip -t "$dir/kernel-root/boot/vmlinuz-$kver" 2>/dev/null; then
        gzip -dc "$dir/kernel-root/boot/vmlinuz-$kver" > "$dir/Image"
    else
        cp "$dir/kernel-root/boot/vmlinuz-$kver" "$dir/Image"
    fi
    cp "$dir/kernel-root/boot/config-$kver" "$dir/config"
    echo "$kver" > "$dir/version"
    depmod -b "$dir/kernel-root" "$kver"
    : > "$dir/modules/load-order"
    local module
    for module in virtio_pci virtio_mem; do
        modprobe --show-depends -d "$dir/kernel-root" -S "$kver" "$module" 2>/dev/null | while read -r kind path _; do
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
    rm -rf "$dir/kernel-root"
    # kexec-tools links Xen's libraries on arm64 (libxenctrl, …): take every library package in the dependency
    # closure, and let copy_arm64_program pick the files it needs. kexec-tools and busybox come from bookworm,
    # the release of the kernel: trixie's kexec-tools 2.0.31 finds no `_text` in 6.1's /proc/kallsyms and
    # writes a kernel-text PT_LOAD of garbage (vaddr -1, paddr 0x8000ada00000), which the crash kernel faults on
    # when /proc/vmcore is read; trixie's busybox base64 pads every 4 KiB block. glibc and libudev come from
    # trixie, the release the daemon is built against (bookworm's kexec needs glibc >= 2.34 only).
    log "fetching busybox-static and kexec-tools (arm64, bookworm) with their libraries"
    rm -rf "$dir/debs" && mkdir -p "$dir/debs" && chmod 0777 "$dir/debs"
    local libraries
    libraries=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances kexec-tools:arm64 2>/dev/null \
        | grep -E '^(lib[^ <>]*|zlib1g):arm64$' | grep -vE '^(libc6|libgcc-s1):' | sort -u)
    # shellcheck disable=SC2086 # one word per package
    (cd "$dir/debs" && apt-get download -q busybox-static:arm64 kexec-tools:arm64 $libraries >&2)
    for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/kexec-root"; done
    rm -rf "$dir/debs"
    log "fetching glibc and libudev (arm64, trixie)"
    libraries=$(in_chroot apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances libc6:arm64 libudev1:arm64 libgcc-s1:arm64 \
        | grep -E '^(lib[^ <>]*|zlib1g):arm64$' | sort -u)
    mkdir -p "$CHROOT/tmp/arm64-debs"
    # shellcheck disable=SC2086 # one word per package
    in_chroot /bin/sh -c 'cd /tmp/arm64-debs && rm -f ./*.deb && apt-get download -q "$@"' sh $libraries >&2
    for deb in "$CHROOT"/tmp/arm64-debs/*.deb; do dpkg -x "$deb" "$dir/user-root"; done
    rm -rf "$CHROOT/tmp/arm64-debs"
    touch "$dir/ready"
    log "parts ready in $((SECONDS - started))s: kernel $kver, modules: $(tr '\n' ' ' < "$dir/modules/load-order")"
    grep -E '^CONFIG_(VIRTIO_MEM|MEMORY_HOTPLUG|ACPI_HOTPLUG_MEMORY|CRASH_DUMP|KEXEC_FILE|CRASH_HOTPLUG)[= ]' \
        "$dir/config" >&2 || true
    echo "$dir"
}

# Copies an arm64 program into the tree with its ELF interpreter and every library it needs (recursively), taken
# from the unpacked packages: the host cannot run ldd on it.
copy_arm64_program() {
    local parts=$1 root=$2 program=$3 destination=$4
    install -D -m0755 "$program" "$root$destination"
    local interpreter
    interpreter=$(readelf -l "$program" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    if [ -n "$interpreter" ] && [ ! -e "$root$interpreter" ]; then
        install -D -m0755 "$(find_arm64_library "$parts" "$(basename "$interpreter")")" "$root$interpreter"
    fi
    local library
    for library in $(readelf -d "$program" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -e "$root/lib/aarch64-linux-gnu/$library" ] && continue
        local found
        found=$(find_arm64_library "$parts" "$library")
        install -D -m0755 "$found" "$root/lib/aarch64-linux-gnu/$library"
        copy_arm64_libraries_of "$parts" "$root" "$found"
    done
}

copy_arm64_libraries_of() {
    local parts=$1 root=$2 object=$3 library
    for library in $(readelf -d "$object" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -e "$root/lib/aarch64-linux-gnu/$library" ] && continue
        local found
        found=$(find_arm64_library "$parts" "$library")
        install -D -m0755 "$found" "$root/lib/aarch64-linux-gnu/$library"
        copy_arm64_libraries_of "$parts" "$root" "$found"
    done
}

find_arm64_library() {
    local parts=$1 name=$2 candidate
    for candidate in "$parts"/{user-root,kexec-root}/{usr/,}lib/aarch64-linux-gnu/"$name" \
        "$parts"/{user-root,kexec-root}/{usr/,}lib/"$name"; do
        [ -e "$candidate" ] && { readlink -f "$candidate"; return; }
    done
    log "no arm64 $name in the unpacked packages ($parts/user-root, $parts/kexec-root)"
    exit 1
}

first_existing() {
    local candidate
    for candidate in "$@"; do [ -e "$candidate" ] && { echo "$candidate"; return; }; done
    log "none of these exists: $*"
    exit 1
}

build_initramfs() {
    local daemon=$1 out=$2
    local parts
    parts=$(guest_parts)
    rm -rf "$out" && mkdir -p "$out"
    local root="$out/root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,boot,etc/kdump-hotplugd,lib/modules,var/log}
    # The arm64 busybox cannot run here to list its applets: the guest's /init installs the links itself.
    local busybox
    busybox=$(first_existing "$parts"/kexec-root/{usr/,}bin/busybox)
    install -m0755 "$busybox" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    local kexec
    kexec=$(first_existing "$parts"/kexec-root/{usr/,}sbin/kexec)
    copy_arm64_program "$parts" "$root" "$kexec" /sbin/kexec
    ln -s /sbin/kexec "$root/usr/sbin/kexec"
    if [ "$daemon" != none ]; then
        copy_arm64_program "$parts" "$root" "$daemon" /usr/sbin/kdump-hotplugd
        aarch64-linux-gnu-strip --strip-unneeded "$root/usr/sbin/kdump-hotplugd"
    fi
    cp "$parts"/modules/* "$root/lib/modules/"
    printf '%s\n' '#!/bin/busybox sh' '/bin/busybox --install -s' 'exec /bin/sh /init-common' > "$root/init"
    chmod 0755 "$root/init"
    install -m0755 "$GUEST/init.sh" "$root/init-common"
    # The x86 tier's helpers, with the arm64 virt machine's console (PL011) for the crash kernel, and reading
    # only the first 8 KiB of /proc/vmcore (ELF header and notes): on arm64 the header kexec-tools writes has a
    # kernel-text PT_LOAD of garbage right after them (paddr 0x8000…, no `_text` in 6.1's kallsyms), and reading
    # it oopses the crash kernel ("level 3 address size fault" in copy_oldmem_page).
    sed -e 's/console=ttyS0/console=ttyAMA0/' -e 's|head -c 65536 /proc/vmcore|head -c 8192 /proc/vmcore|' \
        "$GUEST/guest-tools.sh" > "$root/bin/guest-tools"
    chmod 0755 "$root/bin/guest-tools"
    grep -q 'console=ttyAMA0' "$root/bin/guest-tools" && grep -q 'head -c 8192 /proc/vmcore' "$root/bin/guest-tools" \
        || { log "guest-tools.sh changed: the crash console or the vmcore read cannot be rewritten"; exit 1; }
    mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/crash.cpio"
    local extra="$out/extra"
    mkdir -p "$extra/boot"
    cp "$parts/Image" "$extra/boot/vmlinuz"
    cp "$out/crash.cpio" "$extra/boot/initrd.img"
    (cd "$extra" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/extra.cpio"
    cat "$out/crash.cpio" "$out/extra.cpio" > "$out/boot.cpio"
    cp "$parts/Image" "$out/Image"
    cp "$parts/version" "$out/version"
    rm -rf "$root" "$extra" "$out/extra.cpio"
    log "arm64 initramfs: $(du -h "$out/boot.cpio" | cut -f1) (crash kernel's: $(du -h "$out/crash.cpio" | cut -f1)), daemon: $daemon"
}

# cargo-deb's `$auto` runs dpkg-shlibdeps, which on this amd64 host knows no arm64 library: the package comes
# out with only the manifest's own dependencies. dpkg-shlibdeps in the chroot (where libc6, libgcc-s1 and
# libudev1 are installed for arm64, the versions the binary was linked against) gives the real ones, and the
# package is rebuilt with them in front.
deb_depends() {
    local deb=$1
    case "$deb" in "$TREE"/*) ;; *) deb=$TREE/$deb ;; esac
    [ -f "$deb" ] || { log "deb-depends: no $deb"; exit 2; }
    local work=$TREE/target/arm64/deb-depends
    rm -rf "$work" && mkdir -p "$work/debian"
    dpkg-deb -R "$deb" "$work/pkg"
    local binary=usr/sbin/kdump-hotplugd
    printf '%s\n' 'Source: kdump-hotplugd' '' 'Package: kdump-hotplugd' 'Architecture: arm64' > "$work/debian/control"
    local shlibs
    shlibs=$(in_chroot /bin/sh -c 'cd "$1" && dpkg-shlibdeps -O "pkg/$2"' sh "/src/${work#"$TREE"/}" "$binary" \
        | sed -n 's/^shlibs:Depends=//p')
    [ -n "$shlibs" ] || { log "deb-depends: dpkg-shlibdeps found no dependencies for $binary"; exit 1; }
    local control=$work/pkg/DEBIAN/control current
    current=$(sed -n 's/^Depends: //p' "$control")
    if [ -n "$current" ]; then
        sed -i "s/^Depends: .*/Depends: $shlibs, $current/" "$control"
    else
        echo "Depends: $shlibs" >> "$control"
    fi
    dpkg-deb --root-owner-group -Zxz --build "$work/pkg" "$deb" >&2
    rm -rf "$work"
    log "$(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"
}

case "${1:-}" in
    chroot) make_chroot ;;
    build)
        shift
        [ $# -gt 0 ] || set -- build --release --locked --target "$TARGET" --bin kdump-hotplugd
        dir=target/rust-1.85
        case " $* " in *" $TARGET "*|*"=$TARGET "*) dir=target/arm64 ;; esac
        make_chroot
        started=$SECONDS
        in_chroot /bin/sh -c 'cd /src && CARGO_TARGET_DIR=$0 exec nice cargo "$@"' "$dir" "$@" >&2
        log "cargo $* in the chroot: $((SECONDS - started))s"
        ;;
    deb-depends) make_chroot; deb_depends "$2" ;;
    host) host_setup ;;
    guest-parts) guest_parts ;;
    initramfs) host_setup; build_initramfs "$2" "$3" ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
