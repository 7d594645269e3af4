# kdump-hotplugd %post. $1: 1 on first install, 2 or more on upgrade.
# The drop-in directory of kdump-hotplugd.toml(5); cargo-generate-rpm cannot package an empty
# directory, so it is created here.
mkdir -p /etc/kdump-hotplugd/config.d
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    # Enable (not start) as the presets say: 50-kdump-hotplugd.preset says "enable" unless the
    # admin's or the distribution's presets say otherwise. Works without a running systemd.
    systemctl --no-reload preset kdump-hotplugd.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    # Let the bus pick up org.kdump.Hotplug1.conf (dbus-broker needs the reload).
    systemctl reload dbus.service >/dev/null 2>&1 || :
fi
