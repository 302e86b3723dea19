#!/usr/bin/env bash
# The KEMI API of the installed Kamailio, as JSON for kemi.testing (kemi/testing/ksr_api_X_Y.json):
#   scripts/ksr-api/snapshot.sh > kemi/testing/ksr_api_6_0.json
# Starts Kamailio on snapshot.cfg (loopback, a temp folder, its own PID), asks app_python.api_list
# over its control socket, stops it by PID. scripts/debroot.py runs it on Debian 13:
#   scripts/debroot.py run trixie . 'scripts/ksr-api/snapshot.sh > kemi/testing/ksr_api_6_0.json'
# A Kamailio built from source (5.8 has no Debian package), installed with `make install PREFIX=DIR`:
#   SNAPSHOT_KAMAILIO=DIR scripts/ksr-api/snapshot.sh > kemi/testing/ksr_api_5_8.json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dbtext=/usr/share/kamailio/dbtext/kamailio mpath=   # Debian's (snapshot.cfg's mpath)
if [[ -n ${SNAPSHOT_KAMAILIO:-} ]]; then
    # its own binaries, modules and db_text tables (lib64 or lib, as its build chose)
    PATH=$SNAPSHOT_KAMAILIO/sbin:$PATH
    mpath="s#^mpath=.*#mpath=\"$(ls -d "$SNAPSHOT_KAMAILIO"/lib*/kamailio/modules | head -1)/\"#;"
    dbtext=$SNAPSHOT_KAMAILIO/share/kamailio/dbtext/kamailio
fi
work=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=${SNAPSHOT_PORT:-15999}
# db_text on Kamailio's own empty tables (auth_db, permissions and sqlops check their versions)
cp -r "$dbtext" "$work/db"
: > "$work/dispatcher.list"; : > "$work/permissions.allow"
cat > "$work/routes.py" <<'PY'
import KSR
class Routes:
    def ksr_request_route(self, msg): return 1
    def ksr_reply_route(self, msg): return 1
    def ksr_onsend_route(self, msg): return 1
    def ksr_xhttp_event(self, msg, evname): return 1
    def child_init(self, rank): return 0
def mod_init(): return Routes()
PY
sed -e "${mpath}s#SNAPSHOT_PORT#$port#; s#SNAPSHOT_CTL#$work/ctl#; s#SNAPSHOT_FIFO#$work/fifo#; s#SNAPSHOT_DB#$work/db#g" \
    -e "s#SNAPSHOT_NG#$((port + 1))#; s#SNAPSHOT_DMQ#$((port + 2))#; s#SNAPSHOT_DS#$work/dispatcher.list#; s#SNAPSHOT_SCRIPT#$work/routes.py#; s#SNAPSHOT_ALLOW#$work/permissions.allow#g" \
    "$here/snapshot.cfg" > "$work/kamailio.cfg"
cd "$work"
PYTHONHOME=$(/usr/bin/python3 -I -c 'import sys; print(sys.base_prefix)') \
    kamailio -DD -E -f kamailio.cfg -Y "$work" -a no > "$work/kamailio.log" 2>&1 &
pid=$!
up=0
for _ in $(seq 150); do
    kamcmd -s "unix:$work/ctl" core.version >/dev/null 2>&1 && { up=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
if ((!up)); then echo "snapshot: Kamailio did not start:" >&2; tail -20 "$work/kamailio.log" >&2; exit 1; fi
kamcmd -s "unix:$work/ctl" app_python.api_list | "$here/../ksr-api-snapshot.py"
