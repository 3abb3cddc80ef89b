#!/usr/bin/env bash
# Proves the Debian package (issue 28) on this machine, as root: lintian, the contents, an
# install with dpkg -i, --version, `check` as the service user failing on the placeholders
# only, both units verified, the service's exposure, the placeholders filled, the service run
# under systemd (in a container) and by hand as its user, an upgrade that keeps the edits,
# then a remove, and a purge that leaves nothing but the system user and group.
# Usage: packaging/test-deb.sh target/debian/chat-notifier_*.deb (packaging/build-deb.sh
# prints that path). Installs lintian and systemd-container when missing. Refuses to run
# where chat-notifier is already installed: it purges what it installed.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: packaging/test-deb.sh PACKAGE.deb}
[ -f "$deb" ] || { echo "test-deb: no package $deb" >&2; exit 1; }
fail() {
  echo "test-deb: $*" >&2
  exit 1
}
step() { echo "test-deb: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i, runuser)"
if dpkg-query -W -f '${Status}' chat-notifier 2>/dev/null | grep -q ' installed$'; then
  fail "chat-notifier is installed on this machine already; this test would purge it"
fi
if ! command -v lintian >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null
fi

# 1. lintian: no error, no warning but those the package overrides, each with its reason
# (packaging/deb/lintian-overrides). Informational tags are listed, not judged.
# (--fail-on counts overridden tags too once they are shown, so the verdict is read here.)
out=$(lintian --fail-on none --display-info --show-overrides "$deb" 2>&1) || fail "lintian could not run: $out"
out=$(grep -v '^running with root privileges is not recommended!$' <<<"$out" || true)
! grep -qE '^(E|W): ' <<<"$out" || fail "lintian: $out"
step "lintian: no error, no warning not overridden ($(grep -c '^O: ' <<<"$out" || true) overridden, $(grep -c '^I: ' <<<"$out" || true) informational)"
[ -z "$out" ] || sed 's/^/  /' <<<"$out"

# 2. The contents, exactly: every file and folder with its mode and owner.
expected=$(
  cat <<'EOF'
drwxr-xr-x 0/0 ./etc/
drwxr-xr-x 0/0 ./etc/chat-notifier/
-rw------- 0/0 ./etc/chat-notifier/env
-rw-r----- 0/0 ./etc/chat-notifier/notifier.toml
drwxr-xr-x 0/0 ./usr/
drwxr-xr-x 0/0 ./usr/bin/
-rwxr-xr-x 0/0 ./usr/bin/chat-notifier
drwxr-xr-x 0/0 ./usr/lib/
drwxr-xr-x 0/0 ./usr/lib/systemd/
drwxr-xr-x 0/0 ./usr/lib/systemd/system/
-rw-r--r-- 0/0 ./usr/lib/systemd/system/chat-notifier.service
-rw-r--r-- 0/0 ./usr/lib/systemd/system/chat-notifier.timer
drwxr-xr-x 0/0 ./usr/lib/sysusers.d/
-rw-r--r-- 0/0 ./usr/lib/sysusers.d/chat-notifier.conf
drwxr-xr-x 0/0 ./usr/share/
drwxr-xr-x 0/0 ./usr/share/bash-completion/
drwxr-xr-x 0/0 ./usr/share/bash-completion/completions/
-rw-r--r-- 0/0 ./usr/share/bash-completion/completions/chat-notifier
drwxr-xr-x 0/0 ./usr/share/doc/
drwxr-xr-x 0/0 ./usr/share/doc/chat-notifier/
-rw-r--r-- 0/0 ./usr/share/doc/chat-notifier/README.md
-rw-r--r-- 0/0 ./usr/share/doc/chat-notifier/changelog.Debian.gz
-rw-r--r-- 0/0 ./usr/share/doc/chat-notifier/copyright
drwxr-xr-x 0/0 ./usr/share/fish/
drwxr-xr-x 0/0 ./usr/share/fish/vendor_completions.d/
-rw-r--r-- 0/0 ./usr/share/fish/vendor_completions.d/chat-notifier.fish
drwxr-xr-x 0/0 ./usr/share/lintian/
drwxr-xr-x 0/0 ./usr/share/lintian/overrides/
-rw-r--r-- 0/0 ./usr/share/lintian/overrides/chat-notifier
drwxr-xr-x 0/0 ./usr/share/man/
drwxr-xr-x 0/0 ./usr/share/man/man1/
-rw-r--r-- 0/0 ./usr/share/man/man1/chat-notifier.1.gz
drwxr-xr-x 0/0 ./usr/share/zsh/
drwxr-xr-x 0/0 ./usr/share/zsh/vendor-completions/
-rw-r--r-- 0/0 ./usr/share/zsh/vendor-completions/_chat-notifier
EOF
)
contents=$(dpkg-deb --contents "$deb" | awk '{ print $1, $2, $6 }' | sort -k3)
diff <(echo "$expected") <(echo "$contents") >&2 || fail "dpkg-deb --contents differs from the list above (< expected, > found)"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
[ "$(sort <<<"$conffiles")" = $'/etc/chat-notifier/env\n/etc/chat-notifier/notifier.toml' ] || fail "conffiles: $conffiles"
for script in postinst postrm prerm; do
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO "./$script" | sh -n || fail "$script: not valid sh"
done
step "contents: the $(wc -l <<<"$contents") entries listed, conffiles /etc/chat-notifier/{env,notifier.toml}"

# 3. Installed: the user, the modes an owner relies on, nothing enabled or started.
trap 'dpkg --purge chat-notifier >/dev/null 2>&1 || true; rm -rf /srv/test-deb-bot' EXIT
dpkg -i "$deb" >/dev/null
getent passwd chat-notifier >/dev/null || fail "no user chat-notifier"
getent group chat-notifier >/dev/null || fail "no group chat-notifier"
modes=$(stat -c '%a %U:%G %n' /etc/chat-notifier /etc/chat-notifier/notifier.toml /etc/chat-notifier/env \
  /var/lib/chat-notifier)
[ "$modes" = "750 root:chat-notifier /etc/chat-notifier
640 root:chat-notifier /etc/chat-notifier/notifier.toml
600 root:root /etc/chat-notifier/env
700 chat-notifier:chat-notifier /var/lib/chat-notifier" ] || fail "modes after install: $modes"
[ ! -e /etc/systemd/system/timers.target.wants/chat-notifier.timer ] || fail "the timer was enabled"
cmp -s /etc/chat-notifier/notifier.toml packaging/deb/notifier.toml || fail "the installed config is not packaging/deb/notifier.toml"
zcat /usr/share/man/man1/chat-notifier.1.gz | grep -q '^\.TH chat-notifier 1' || fail "man page"
grep -q 'complete.*chat-notifier' /usr/share/bash-completion/completions/chat-notifier || fail "bash completion"
step "dpkg -i: user and group chat-notifier, config 640 root:chat-notifier, env 600, state 700, timer not enabled"

# 4. --version, from the installed binary.
version=$(/usr/bin/chat-notifier --version)
pkg_version=$(dpkg-query -W -f '${Version}' chat-notifier)
[ "$version" = "chat-notifier ${pkg_version%-*}" ] || fail "--version: $version (package $pkg_version)"
step "--version: $version"

# 5. check as the service user: fails on the placeholders only, one line each, and the
# service user reads its config and its state folder.
set +e
check=$(cd / && runuser -u chat-notifier -- /usr/bin/chat-notifier --config /etc/chat-notifier/notifier.toml check 2>&1)
code=$?
set -e
[ "$code" = 1 ] || fail "check exited $code: $check"
failed=$(grep -E '^[a-z]+ +FAILED  ' <<<"$check" | sed -E 's/^[a-z]+ +FAILED  ([^:]+):.*/\1/' | tr '\n' ' ')
[ "$failed" = "mail.from mail.to source.url transport.host transport.username " ] ||
  fail "check failed on other than the placeholders ($failed): $check"
grep -q '^state      ok      /var/lib/chat-notifier/state.sqlite' <<<"$check" || fail "state: $check"
grep -q '^config     ok' <<<"$check" && grep -q '^templates  ok' <<<"$check" || fail "check: $check"
step "check as chat-notifier: exit 1, one FAILED line per placeholder: $failed"
sed 's/^/  /' <<<"$check"

# 6. Both units, as installed (offline: systemd need not be PID 1 here).
systemd-analyze verify --man=no /usr/lib/systemd/system/chat-notifier.service \
  /usr/lib/systemd/system/chat-notifier.timer || fail "systemd-analyze verify"
timer=/usr/lib/systemd/system/chat-notifier.timer
grep -qx 'OnCalendar=\*:0/5' $timer && grep -qx 'Persistent=true' $timer || fail "timer: $(cat $timer)"
step "systemd-analyze verify: both units clean; the timer every 5 minutes, Persistent=true"
security=$(systemd-analyze security --offline=yes --threshold=29 /usr/lib/systemd/system/chat-notifier.service 2>&1) ||
  fail "systemd-analyze security: exposure 3.0 or more: $security"
level=$(grep -o 'Overall exposure level for chat-notifier.service: [0-9.]*' <<<"$security" | awk '{ print $NF }')
awk -v l="$level" 'BEGIN { exit !(l != "" && l < 3.0) }' || fail "exposure $level: $security"
step "systemd-analyze security --offline=yes: exposure $level (below 3.0)"

# 7. An owner fills the placeholders in the one file (here: the bundled example export as the
# store, emails into a folder under the state's, every chat of it recent enough for a first
# run to email), then `check` passes as the service user.
bot=/srv/test-deb-bot
mkdir -p $bot
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.commit()' \
  $bot/export.sqlite examples/export-day1.sql
chmod 0644 $bot/export.sqlite
python3 - /etc/chat-notifier/notifier.toml <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
for placeholder, value in [
    ("postgresql://chat-notifier@db.your-domain.invalid:5432/chats?sslmode=verify-full",
     "sqlite:///srv/test-deb-bot/export.sqlite"),
    ("notifier@your-domain.invalid>", "notifier@example.com>"),
    ("owner@your-domain.invalid>", "owner@example.com>"),
    ('first_run_horizon = "24h"', 'first_run_horizon = "36500d"'),
]:
    assert placeholder in text, placeholder
    text = text.replace(placeholder, value)
transport = '[transport]\nkind = "folder"\npath = "/var/lib/chat-notifier/outbox"\n\n'
text, n = re.subn(r"(?ms)^\[transport\]\n.*?(?=^\[notify\])", lambda _: transport, text)
assert n == 1, "no [transport] table"
open(path, "w").write(text)
PY
as_service() { (cd / && runuser -u chat-notifier -- /usr/bin/chat-notifier --config /etc/chat-notifier/notifier.toml "$@"); }
check=$(as_service check 2>&1) || fail "check after the edit: $check"
step "the placeholders filled: check passes as chat-notifier"

# 8. The service as the timer starts it, under systemd with all its hardening. This machine's
# systemd is not PID 1, so a container boots it (systemd-nspawn, on a throwaway overlay of this
# machine's root: the package installed, the config filled), starts chat-notifier.service,
# reports, and powers off. The run there is a first run at the real time: all 5 chats of the
# example are over, so 5 emails. Nothing of it reaches this machine but the report.
if ! command -v systemd-nspawn >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container >/dev/null
fi
probe=$(mktemp -d)
mkdir "$probe/out" "$probe/root"
cat >"$probe/deb-probe.service" <<'UNIT'
[Unit]
Description=test-deb: start chat-notifier.service and report
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'exec >/probe-out/report 2>&1; systemctl start chat-notifier.service; \
  systemctl show -p Result -p ExecMainStatus chat-notifier.service; \
  echo emails=$(find /var/lib/chat-notifier/outbox -name "*.eml" | wc -l); \
  stat -c "state=%%a %%U" /var/lib/chat-notifier/state.sqlite; systemctl start chat-notifier.timer; \
  systemctl show -p ActiveState chat-notifier.timer; systemd-analyze security chat-notifier.service | tail -n 1; \
  journalctl -u chat-notifier --no-pager -o cat'
ExecStartPost=/bin/systemctl poweroff
UNIT
# shellcheck disable=SC2016 # expanded by the inner shell
timeout 300 unshare -m sh -c '
  set -e
  probe=$1
  mount --make-rprivate /
  mount -t tmpfs tmpfs "$probe/root"
  mkdir "$probe/root/upper" "$probe/root/work" "$probe/root/merged"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$probe/root/upper,workdir=$probe/root/work" "$probe/root/merged"
  m=$probe/root/merged
  cp "$probe/deb-probe.service" "$m/etc/systemd/system/"
  ln -s ../deb-probe.service "$m/etc/systemd/system/multi-user.target.wants/deb-probe.service"
  cat /proc/sys/kernel/random/uuid | tr -d - >"$m/etc/machine-id"
  mkdir "$m/probe-out"
  exec systemd-nspawn -q -D "$m" --boot --register=no --keep-unit --link-journal=no --console=pipe \
    --bind="$probe/out:/probe-out"
' sh "$probe" >"$probe/boot.log" 2>&1 || fail "the container did not boot: $(tail -n 20 "$probe/boot.log")"
report=$(cat "$probe/out/report" 2>/dev/null || true)
rm -rf "$probe"
grep -qx 'Result=success' <<<"$report" && grep -qx 'ExecMainStatus=0' <<<"$report" && grep -qx 'emails=5' <<<"$report" &&
  grep -qx 'state=600 chat-notifier' <<<"$report" && grep -qx 'ActiveState=active' <<<"$report" ||
  fail "chat-notifier.service under systemd: $report"
exposure=$(grep -o 'Overall exposure level for chat-notifier.service: [0-9.]*' <<<"$report" | awk '{ print $NF }')
step "under systemd (nspawn): chat-notifier.service succeeded as chat-notifier, 5 emails, state 0600, timer active, exposure $exposure"

# 9. A run by hand as the service user, here: the demo's first run at its own time, 4 emails.
as_service run --now 2026-11-20T12:00:00Z || fail "run as chat-notifier failed"
sent=$(find /var/lib/chat-notifier/outbox -name '*.eml' | wc -l)
[ "$sent" = 4 ] || fail "the run wrote $sent emails, not 4"
[ "$(stat -c '%a %U' /var/lib/chat-notifier/state.sqlite)" = "600 chat-notifier" ] || fail "state file mode"
step "a run as chat-notifier wrote $sent emails and state.sqlite (0600)"

# 10. An upgrade (the same package again) keeps the owner's edits and the timer as enabled,
# and starts nothing: the state and the outbox stay as they were.
systemctl enable chat-notifier.timer 2>/dev/null
wants=/etc/systemd/system/timers.target.wants/chat-notifier.timer
[ -L $wants ] || fail "systemctl enable made no $wants"
before=$(md5sum /etc/chat-notifier/notifier.toml /var/lib/chat-notifier/state.sqlite)
dpkg -i "$deb" >/dev/null
[ "$(md5sum /etc/chat-notifier/notifier.toml /var/lib/chat-notifier/state.sqlite)" = "$before" ] ||
  fail "the upgrade changed the edited config or the state"
[ "$(find /var/lib/chat-notifier/outbox -name '*.eml' | wc -l)" = "$sent" ] || fail "the upgrade ran chat-notifier"
[ -L $wants ] || fail "the upgrade disabled the timer"
[ "$(stat -c '%a %U:%G' /etc/chat-notifier/notifier.toml)" = "640 root:chat-notifier" ] || fail "modes after upgrade"
step "upgrade: the edited config kept, the timer still enabled, the state untouched, nothing run"

# 11. A remove keeps the config and the state; a purge takes both. What remains is listed.
dpkg --remove chat-notifier >/dev/null
[ -f /var/lib/chat-notifier/state.sqlite ] && grep -q '^kind = "folder"' /etc/chat-notifier/notifier.toml ||
  fail "dpkg --remove did not keep the edited config and the state"
rm -rf $bot
[ ! -e /usr/bin/chat-notifier ] || fail "dpkg --remove left the binary"
dpkg --purge chat-notifier >/dev/null
trap - EXIT
# Anything named after the package where packages and their scripts write (dpkg's own records
# included), temporary files aside.
left=$(find /etc /usr /var /opt /srv \( -path /var/tmp -o -path /var/cache \) -prune -o -name '*chat-notifier*' -print \
  2>/dev/null || true)
[ ! -e /etc/chat-notifier ] && [ ! -e /var/lib/chat-notifier ] && [ ! -e $wants ] && [ -z "$left" ] ||
  fail "dpkg --purge left: $left"
! dpkg-statoverride --list | grep -q chat-notifier || fail "dpkg --purge left a statoverride: $(dpkg-statoverride --list)"
! dpkg-query -W chat-notifier >/dev/null 2>&1 || fail "dpkg still knows chat-notifier"
# Kept on purpose, as Debian keeps system users: files the uid owned may still be around.
getent passwd chat-notifier >/dev/null || fail "the system user went: expected to stay"
step "dpkg --remove kept the edited config and the state; dpkg --purge left nothing but the user and group chat-notifier"
step "all 11 steps passed"
