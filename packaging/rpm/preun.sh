# kdump-hotplugd %preun. $1: 0 on erase, 1 or more on upgrade.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable kdump-hotplugd.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop kdump-hotplugd.service >/dev/null 2>&1 || :
    fi
fi
