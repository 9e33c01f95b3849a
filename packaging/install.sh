#!/bin/sh
# Install the service around an installed `mirrorwatch` command: the systemd unit, the docs it
# names (Documentation=), the logrotate rule, /etc/mirrorwatch and /etc/default/mirrorwatch.
# Run from the source tree as root; DESTDIR=/some/root installs under that root instead.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
root=${DESTDIR:-}

install -D -m 0644 "$here/mirrorwatch-watch.service" "$root/etc/systemd/system/mirrorwatch-watch.service"
install -D -m 0644 "$here/logrotate" "$root/etc/logrotate.d/mirrorwatch"
for doc in deploy.md config.md eve.md schema.md schema.json; do
  [ -f "$top/docs/$doc" ] && install -D -m 0644 "$top/docs/$doc" "$root/usr/share/doc/mirrorwatch/$doc"
done
install -d -m 0755 "$root/etc/mirrorwatch"
if [ ! -e "$root/etc/default/mirrorwatch" ]; then
  install -D -m 0644 /dev/null "$root/etc/default/mirrorwatch"
  echo 'MIRRORWATCH_ARGS="-i span0"' > "$root/etc/default/mirrorwatch"
fi
if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload || true
fi
echo "installed; set the interfaces in /etc/default/mirrorwatch, then:"
echo "  systemctl enable --now mirrorwatch-watch"
