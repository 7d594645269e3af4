#!/usr/bin/env bash
# Packaging checks for kdump-hotplugd: bash tests/packaging.sh (as root).
#
#   1. the unit passes `systemd-analyze verify` (as shipped and with each example drop-in), and its
#      `systemd-analyze security` exposure is no worse than the recorded 2.6 ("OK");
#   2. `make packages` builds the .deb and the .rpm from the `make install` staging tree;
#   3. the .deb installs with `dpkg -i` into a fresh Debian 12 root (debootstrap minbase, cached,
#      plus the dependencies the .deb declares): every file in place with the right content and
#      mode, config as conffile, config.d created, unit enabled by the maintainer scripts; purge
#      removes it all again;
#   4. `rpm -qlp` lists exactly the same files; config.toml is %config(noreplace); the scriptlets
#      are valid sh and enable through presets;
#   5. a private dbus-daemon whose configuration includes the installed policy starts, and the
#      policy does what it says: only root owns org.kdump.Hotplug1; anyone may read properties,
#      introspect and call GetRanges/GetStatus; Reload/ReloadConfig/SetPaused/Properties.Set are
#      root only;
#   6. both man pages render with groff and man without a single warning.
#
# Works on a fresh Debian 12 machine: it installs the Debian packages and cargo tools it needs.
# The Debian root is cached in $KDUMP_HOTPLUGD_ROOT_CACHE (default /var/tmp/kdump-hotplugd-root);
# each run installs into a fresh copy of it.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

ROOT_CACHE=${KDUMP_HOTPLUGD_ROOT_CACHE:-/var/tmp/kdump-hotplugd-root}
SUITE=bookworm
PKGROOT=$REPO/target/pkgroot
SCORE_LIMIT=2.6
BUS_NAME=org.kdump.Hotplug1
OBJECT=/org/kdump/Hotplug1
NOBODY=65534

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$*"; }
# check "description" command...: passes when the command exits 0.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
section() { printf '\n== %s\n' "$*"; }
die() {
    printf 'FAIL - %s\n' "$*"
    printf '%d passed, %d failed\n' "$passed" "$((failed + 1))"
    exit 1
}

WORK=$(mktemp -d /tmp/kdump-hotplugd-packaging.XXXXXX)
chmod 0755 "$WORK" # the unprivileged D-Bus client must reach the bus socket in here
BG_PIDS=()
ROOT= # the fresh Debian root of this run, once made
cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    rm -rf "$WORK"
    [ -n "$ROOT" ] && rm -rf "$ROOT"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || die "must run as root (dpkg -i into a chroot, debootstrap, setpriv)"

# --- Prerequisites ---------------------------------------------------------------------------------
section "prerequisites"
# command -> Debian package that provides it
declare -A NEEDED=(
    [systemd-analyze]=systemd [debootstrap]=debootstrap [rpm]=rpm [dbus-daemon]=dbus-daemon
    [dbus-send]=dbus-bin [dbus-test-tool]=dbus-tests [groff]=groff [man]=man-db
    [setpriv]=util-linux [gzip]=gzip [strip]=binutils [make]=make [chroot]=coreutils
)
missing=()
for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq || die "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]}"
fi
ok "tools present: ${!NEEDED[*]}"

# --- Build -----------------------------------------------------------------------------------------
section "make packages"
start=$(date +%s)
make --no-print-directory packages >"$WORK/make.log" 2>&1 || {
    tail -40 "$WORK/make.log"
    die "make packages"
}
ok "make packages ($(($(date +%s) - start)) s)"
shopt -s nullglob
debs=("$REPO"/target/debian/kdump-hotplugd_*.deb)
rpms=("$REPO"/target/generate-rpm/kdump-hotplugd-*.rpm)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || die "expected one .deb in target/debian, found ${#debs[@]}"
[ ${#rpms[@]} -eq 1 ] || die "expected one .rpm in target/generate-rpm, found ${#rpms[@]}"
DEB=${debs[0]}
RPM=${rpms[0]}
ok "built $(basename "$DEB") and $(basename "$RPM")"

# The reference file set: what `make install` staged (paths relative to /).
(cd "$PKGROOT" && find . -type f -printf '/%P\n' | sort) >"$WORK/staged.list"
[ -s "$WORK/staged.list" ] || die "nothing staged in $PKGROOT"
for expected in /usr/sbin/kdump-hotplugd /usr/lib/systemd/system/kdump-hotplugd.service \
    /usr/lib/systemd/system-preset/50-kdump-hotplugd.preset \
    /usr/share/dbus-1/system.d/org.kdump.Hotplug1.conf /usr/share/dbus-1/interfaces/org.kdump.Hotplug1.xml \
    /etc/kdump-hotplugd/config.toml \
    /usr/share/man/man8/kdump-hotplugd.8.gz /usr/share/man/man5/kdump-hotplugd.toml.5.gz; do
    check "install layout has $expected" grep -qx "$expected" "$WORK/staged.list"
done
check "install layout has an empty /etc/kdump-hotplugd/config.d" \
    test -d "$PKGROOT/etc/kdump-hotplugd/config.d"

# --- systemd unit ----------------------------------------------------------------------------------
section "systemd unit"
# verify checks that ExecStart= (and ExecStopPost=) exists and that the Documentation= man pages resolve: point it at
# the staged binary and man pages. Any output at all (unknown keys are only warnings) fails.
verify_unit() {
    local dir=$WORK/verify.$1
    shift
    mkdir -p "$dir/kdump-hotplugd.service.d"
    sed -E "s#^(ExecStart|ExecStopPost)=/usr/sbin/kdump-hotplugd#\1=$PKGROOT/usr/sbin/kdump-hotplugd#" \
        systemd/kdump-hotplugd.service >"$dir/kdump-hotplugd.service"
    local dropin
    for dropin in "$@"; do
        cp "systemd/kdump-hotplugd.service.d/$dropin.conf.example" \
            "$dir/kdump-hotplugd.service.d/$dropin.conf"
    done
    local out
    out=$(MANPATH=$PKGROOT/usr/share/man systemd-analyze verify "$dir/kdump-hotplugd.service" 2>&1)
    local rc=$?
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     /'
    [ $rc -eq 0 ] && [ -z "$out" ]
}
check "systemd-analyze verify kdump-hotplugd.service" verify_unit plain
check "systemd-analyze verify with command-loader.conf drop-in" verify_unit cmd command-loader
check "systemd-analyze verify with private-network.conf drop-in" verify_unit net private-network

score_line=$(systemd-analyze security --offline=true systemd/kdump-hotplugd.service 2>&1 | tail -1)
score=$(sed -n 's/.*: \([0-9.]*\) \([A-Z]*\).*/\1/p' <<<"$score_line")
level=$(sed -n 's/.*: \([0-9.]*\) \([A-Z]*\).*/\2/p' <<<"$score_line")
echo "     $score_line"
check "security exposure $score $level is at most $SCORE_LIMIT (OK)" \
    awk -v s="$score" -v l="$SCORE_LIMIT" 'BEGIN { exit !(s != "" && s <= l) }'
check "packaging/SECURITY-SCORE.md records the measured score $score" \
    grep -q "\*\*$score\*\*" packaging/SECURITY-SCORE.md
check "preset enables the unit" grep -qx 'enable kdump-hotplugd.service' systemd/50-kdump-hotplugd.preset

# --- .deb in a fresh Debian root -------------------------------------------------------------------
section ".deb installed with dpkg -i into a fresh Debian $SUITE root"
BASE=$ROOT_CACHE/base
if [ ! -e "$BASE/.complete" ]; then
    echo "creating the cached Debian root $BASE (debootstrap --variant=minbase $SUITE, once)"
    rm -rf "$BASE" "$BASE.tmp"
    mkdir -p "$ROOT_CACHE"
    debootstrap --variant=minbase "$SUITE" "$BASE.tmp" >"$WORK/debootstrap.log" 2>&1 || {
        tail -20 "$WORK/debootstrap.log"
        die "debootstrap"
    }
    mv "$BASE.tmp" "$BASE" && touch "$BASE/.complete"
fi
# The base gets what the .deb declares, once: later runs need no network unless the Depends: line
# changes. A clause counts as met when one of its alternatives is installed; version constraints
# are left to dpkg -i below, which refuses unmet ones.
depends=$(dpkg-deb -f "$DEB" Depends)
unmet=()
IFS=',' read -ra clauses <<<"$depends"
for clause in "${clauses[@]}"; do
    met=no
    IFS='|' read -ra alternatives <<<"$clause"
    for alternative in "${alternatives[@]}"; do
        name=$(awk '{print $1}' <<<"$alternative")
        if chroot "$BASE" dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -qx 'install ok installed'; then
            met=yes
        fi
    done
    [ $met = yes ] || unmet+=("$clause")
done
if [ ${#unmet[@]} -gt 0 ]; then
    echo "installing into the cached root what the .deb depends on: ${unmet[*]}"
    cp /etc/resolv.conf "$BASE/etc/resolv.conf"
    chroot "$BASE" apt-get update -qq >"$WORK/apt.log" 2>&1 || {
        tail -20 "$WORK/apt.log"
        die "apt-get update in $BASE"
    }
    DEBIAN_FRONTEND=noninteractive chroot "$BASE" apt-get satisfy -y -qq --no-install-recommends \
        "$depends" >"$WORK/satisfy.log" 2>&1 || {
        tail -20 "$WORK/satisfy.log"
        die "apt-get satisfy '$depends' in $BASE"
    }
fi
ROOT=$ROOT_CACHE/run.$$
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT" || die "copy $BASE"
cp "$DEB" "$ROOT/tmp/pkg.deb"
# No /run/systemd/system in the chroot: the maintainer scripts enable the unit but start nothing.
if chroot "$ROOT" dpkg -i /tmp/pkg.deb >"$WORK/dpkg.log" 2>&1; then
    ok "dpkg -i $(basename "$DEB") (Depends: $depends)"
else
    sed 's/^/     /' "$WORK/dpkg.log"
    die "dpkg -i"
fi
check "dpkg reports kdump-hotplugd installed" \
    bash -c "chroot '$ROOT' dpkg-query -W -f='\${Status}' kdump-hotplugd | grep -qx 'install ok installed'"

chroot "$ROOT" dpkg-query -L kdump-hotplugd | sort >"$WORK/deb-all.list"
while read -r path; do [ -f "$ROOT$path" ] && [ ! -L "$ROOT$path" ] && echo "$path"; done \
    <"$WORK/deb-all.list" >"$WORK/deb-files.list"
# Debian-only extras: the copyright file cargo-deb writes, the changelog and the lintian override.
grep -v -x -e /usr/share/doc/kdump-hotplugd/copyright -e /usr/share/doc/kdump-hotplugd/changelog.Debian.gz \
    -e /usr/share/lintian/overrides/kdump-hotplugd \
    "$WORK/deb-files.list" >"$WORK/deb.list"
if diff -u "$WORK/staged.list" "$WORK/deb.list" >"$WORK/deb.diff"; then
    ok ".deb file set equals the make-install layout ($(wc -l <"$WORK/staged.list") files)"
else
    sed 's/^/     /' "$WORK/deb.diff"
    fail ".deb file set equals the make-install layout"
fi
check ".deb ships /usr/share/doc/kdump-hotplugd/copyright" \
    test -f "$ROOT/usr/share/doc/kdump-hotplugd/copyright"

# Content and mode of every file in place. The binary is stripped by each tool on its own, so it
# is compared by mode and by running it inside the root (which also proves its libraries resolve).
content_mismatch=()
while read -r path; do
    [ "$path" = /usr/sbin/kdump-hotplugd ] && continue
    if ! cmp -s "$PKGROOT$path" "$ROOT$path"; then
        content_mismatch+=("$path")
    elif [ "$(stat -c %a "$ROOT$path")" != 644 ]; then
        content_mismatch+=("$path (mode $(stat -c %a "$ROOT$path"))")
    fi
done <"$WORK/staged.list"
if [ ${#content_mismatch[@]} -eq 0 ]; then
    ok "every installed file matches the staged file byte for byte, mode 644"
else
    fail "installed files differ from the staged ones: ${content_mismatch[*]}"
fi
check "/usr/sbin/kdump-hotplugd is root-owned mode 755" \
    test "$(stat -c '%U %a' "$ROOT/usr/sbin/kdump-hotplugd")" = "root 755"
check "/usr/sbin/kdump-hotplugd runs inside the Debian root (--help)" \
    bash -c "chroot '$ROOT' /usr/sbin/kdump-hotplugd --help >/dev/null"
check "/etc/kdump-hotplugd/config.toml is a conffile" \
    bash -c "chroot '$ROOT' dpkg-query -W -f='\${Conffiles}' kdump-hotplugd | grep -q ' /etc/kdump-hotplugd/config.toml '"
check "postinst created /etc/kdump-hotplugd/config.d" test -d "$ROOT/etc/kdump-hotplugd/config.d"
wants=$ROOT/etc/systemd/system/multi-user.target.wants/kdump-hotplugd.service
# bookworm's deb-systemd-helper links to /lib/systemd/system (the same directory under usrmerge).
check "postinst enabled the unit (multi-user.target.wants symlink -> $(readlink "$wants"))" \
    grep -qxE '(/usr)?/lib/systemd/system/kdump-hotplugd.service' <<<"$(readlink "$wants")"
check "the unit is found at /lib/systemd/system too (usrmerge)" \
    test -f "$ROOT/lib/systemd/system/kdump-hotplugd.service"

# --- D-Bus policy ----------------------------------------------------------------------------------
section "D-Bus policy (installed copy) in a private dbus-daemon"
POLICY=$ROOT/usr/share/dbus-1/system.d/org.kdump.Hotplug1.conf
SOCKET=$WORK/system_bus_socket
# A system-bus-like default policy (as /usr/share/dbus-1/system.conf has it: method calls denied
# unless a service's policy punches a hole), then the installed policy file.
cat >"$WORK/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>$POLICY</include>
</busconfig>
EOF
# --fork returns once the bus listens, so no waiting is needed afterwards.
if dbus-daemon --config-file="$WORK/bus.conf" --fork --print-pid=3 --print-address=1 \
    3>"$WORK/bus.pid" >"$WORK/bus.address" 2>"$WORK/bus.log"; then
    BG_PIDS+=("$(cat "$WORK/bus.pid")")
    ok "dbus-daemon starts with a config that includes the installed policy"
else
    sed 's/^/     /' "$WORK/bus.log"
    die "dbus-daemon rejected the configuration with the policy"
fi
# The same bus with a broken policy must fail, or the check above proves nothing.
sed 's|</busconfig>|<policy user="root"><allow own=|' "$POLICY" >"$WORK/broken.conf"
sed "s|<include>$POLICY</include>|<include>$WORK/broken.conf</include>|; s|$SOCKET|$WORK/broken_socket|" \
    "$WORK/bus.conf" >"$WORK/broken-bus.conf"
if dbus-daemon --config-file="$WORK/broken-bus.conf" --fork --print-pid=3 3>"$WORK/broken.pid" \
    >/dev/null 2>&1; then
    BG_PIDS+=("$(cat "$WORK/broken.pid")")
    fail "dbus-daemon refuses a malformed policy (control)"
else
    ok "dbus-daemon refuses a malformed policy (control)"
fi

ADDRESS=unix:path=$SOCKET
as_nobody() { setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$@"; }
name_has_owner() {
    dbus-send --bus="$ADDRESS" --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner "string:$BUS_NAME" 2>/dev/null | grep -q true
}
wait_for_owner() {
    local deadline=$(($(date +%s) + 10))
    until name_has_owner; do
        [ "$(date +%s)" -lt $deadline ] || return 1
        sleep 0.05
    done
}

# Owning the name: refused for uid 65534 (the tool exits on the AccessDenied error; timeout only
# guards against a policy that wrongly lets it in, in which case it would serve forever).
as_nobody env DBUS_SYSTEM_BUS_ADDRESS="$ADDRESS" timeout 5 \
    dbus-test-tool echo --system --name=$BUS_NAME >"$WORK/nobody-own.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! name_has_owner; then
    ok "uid $NOBODY cannot own $BUS_NAME ($(head -c 120 "$WORK/nobody-own.log" | tr '\n' ' '))"
else
    fail "uid $NOBODY cannot own $BUS_NAME (exit $rc)"
fi
# Root may: a stand-in service (replies to every call) takes the daemon's place.
DBUS_SYSTEM_BUS_ADDRESS="$ADDRESS" dbus-test-tool echo --system --name=$BUS_NAME >/dev/null 2>&1 &
BG_PIDS+=($!)
check "root owns $BUS_NAME" wait_for_owner

# call USER INTERFACE.MEMBER [ARGS...]: exit 0 when the call got a method return.
call() {
    local user=$1 method=$2
    shift 2
    local runner=()
    [ "$user" = nobody ] && runner=(setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups)
    "${runner[@]}" dbus-send --bus="$ADDRESS" --print-reply --dest=$BUS_NAME $OBJECT "$method" "$@" \
        >"$WORK/call.out" 2>&1
}
denied() {
    call "$@"
    local rc=$?
    [ $rc -ne 0 ] && grep -q 'org.freedesktop.DBus.Error.AccessDenied' "$WORK/call.out"
}
for user in nobody root; do
    check "$user may call Properties.Get" call $user org.freedesktop.DBus.Properties.Get \
        string:$BUS_NAME string:State
    check "$user may call Properties.GetAll" call $user org.freedesktop.DBus.Properties.GetAll \
        string:$BUS_NAME
    check "$user may introspect" call $user org.freedesktop.DBus.Introspectable.Introspect
    check "$user may call GetRanges" call $user $BUS_NAME.GetRanges
    check "$user may call GetStatus" call $user $BUS_NAME.GetStatus
done
check "nobody may not call Reload (AccessDenied)" denied nobody $BUS_NAME.Reload
check "nobody may not call ReloadConfig (AccessDenied)" denied nobody $BUS_NAME.ReloadConfig
check "nobody may not call SetPaused (AccessDenied)" denied nobody $BUS_NAME.SetPaused boolean:true
check "nobody may not call Properties.Set (AccessDenied)" denied nobody \
    org.freedesktop.DBus.Properties.Set string:$BUS_NAME string:State variant:string:idle
check "nobody may not call an unknown method (AccessDenied)" denied nobody $BUS_NAME.Bogus
check "root may call Reload" call root $BUS_NAME.Reload
check "root may call ReloadConfig" call root $BUS_NAME.ReloadConfig
check "root may call SetPaused" call root $BUS_NAME.SetPaused boolean:false
check "root may call Properties.Set" call root org.freedesktop.DBus.Properties.Set \
    string:$BUS_NAME string:State variant:string:idle

# --- man pages -------------------------------------------------------------------------------------
section "man pages"
for page in man8/kdump-hotplugd.8.gz man5/kdump-hotplugd.toml.5.gz; do
    installed=$ROOT/usr/share/man/$page # the copy dpkg put in place
    out=$(zcat "$installed" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1)
    check "groff -man -ww renders $page without warnings ${out:+($out)}" test -z "$out"
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$installed" 2>&1 >"$WORK/man.txt")
    check "man -l renders $page without warnings ${out:+($out)}" test -z "$out"
    check "man -l output of $page has NAME and SEE ALSO" \
        bash -c "grep -q '^NAME' '$WORK/man.txt' && grep -q '^SEE ALSO' '$WORK/man.txt'"
done

# --- purge -----------------------------------------------------------------------------------------
section "dpkg --purge"
if chroot "$ROOT" dpkg --purge kdump-hotplugd >"$WORK/purge.log" 2>&1; then
    ok "dpkg --purge kdump-hotplugd"
else
    sed 's/^/     /' "$WORK/purge.log"
    fail "dpkg --purge kdump-hotplugd"
fi
left=()
while read -r path; do [ -e "$ROOT$path" ] && left+=("$path"); done <"$WORK/deb-files.list"
check "purge removed every packaged file ${left[*]:+(left: ${left[*]})}" test ${#left[@]} -eq 0
check "purge removed /etc/kdump-hotplugd" test ! -e "$ROOT/etc/kdump-hotplugd"
check "purge removed the enablement symlink" test ! -L "$wants"

# --- .rpm ------------------------------------------------------------------------------------------
section ".rpm"
rpm -qlp "$RPM" 2>/dev/null | sort >"$WORK/rpm.list"
if diff -u "$WORK/staged.list" "$WORK/rpm.list" >"$WORK/rpm.diff"; then
    ok "rpm -qlp lists exactly the make-install layout ($(wc -l <"$WORK/rpm.list") files)"
else
    sed 's/^/     /' "$WORK/rpm.diff"
    fail "rpm -qlp lists exactly the make-install layout"
fi
check "rpm -qlp lists the same files as the installed .deb" diff -q "$WORK/deb.list" "$WORK/rpm.list"
check "config.toml is %config(noreplace) in the .rpm" bash -c \
    "rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' '$RPM' 2>/dev/null | grep -qx '/etc/kdump-hotplugd/config.toml cn'"
check "the .rpm binary is mode 755" bash -c \
    "rpm -qp --qf '[%{FILENAMES} %{FILEMODES:perms}\n]' '$RPM' 2>/dev/null | grep -qx '/usr/sbin/kdump-hotplugd -rwxr-xr-x'"
rpm -qp --scripts "$RPM" 2>/dev/null >"$WORK/rpm.scripts"
check "the .rpm %post enables through presets" grep -q 'systemctl --no-reload preset kdump-hotplugd.service' "$WORK/rpm.scripts"
check "the .rpm %preun disables on erase" grep -q 'systemctl --no-reload disable kdump-hotplugd.service' "$WORK/rpm.scripts"
check "the .rpm %postun try-restarts on upgrade" grep -q 'systemctl try-restart kdump-hotplugd.service' "$WORK/rpm.scripts"
check "the .rpm scriptlets are valid sh" sh -n packaging/rpm/post.sh packaging/rpm/preun.sh packaging/rpm/postun.sh

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
