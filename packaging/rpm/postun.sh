# kdump-hotplugd %postun. $1: 0 on erase, 1 or more on upgrade.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        # Upgrade: run the new binary.
        systemctl try-restart kdump-hotplugd.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    # The unit keeps /run/kdump-hotplugd across stops (RuntimeDirectoryPreserve=yes); with the binary gone
    # its instance lock and header record mean nothing. An admin's runtime drop-ins stay.
    rm -f /run/kdump-hotplugd/lock /run/kdump-hotplugd/loaded-header /run/kdump-hotplugd/loaded-header.new
    rmdir /run/kdump-hotplugd/config.d 2>/dev/null || :
    rmdir /run/kdump-hotplugd 2>/dev/null || :
    # Directories created by %post go if nothing else is left in them (an admin's drop-ins
    # and a modified config.toml.rpmsave stay).
    rmdir /etc/kdump-hotplugd/config.d 2>/dev/null || :
    rmdir /etc/kdump-hotplugd 2>/dev/null || :
fi
