#!/usr/bin/env bash
# mirror-check.sh -- the acceptance check of --delete on a real tree.
#
# usage: bench/mirror-check.sh [TREE] [WORK]   (default /usr/share, /var/tmp/pcopy-mcheck)
#
# Copies TREE to WORK/src and WORK/dst (cp -a), then drifts them apart:
# 1,000 random files (seeded, so every run picks the same) are removed from
# src, 1,000 new files are added to random directories of dst.  Then
#   pcopy -n -u --delete src dst   must change nothing in dst,
#   pcopy -v -u --delete src dst   must delete exactly the entries -n listed
#                                  (the 1,000 added ones, the 1,000 removed
#                                  ones are still in dst),
# and afterwards rsync -aHAXnc --delete --itemize-changes src/ dst/ must
# print nothing.  WORK is removed at the end.  PCOPY (env) names the binary.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PCOPY=${PCOPY:-$(dirname "$HERE")/pcopy}
tree=${1:-/usr/share} work=${2:-/var/tmp/pcopy-mcheck}
[ ! -e "$work" ] || { echo "mirror-check: $work exists; remove it first" >&2; exit 2; }
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
cd "$work"
cp -a "$tree" src
cp -a src dst
find src -type f -printf '%P\n' | sort | shuf -n 1000 --random-source=<(yes 1) >removed
find dst -type d -printf '%P\n' | sort | shuf -n 1000 -r --random-source=<(yes 2) >dirs
while IFS= read -r f; do rm -f -- "src/$f"; done <removed
n=0
while IFS= read -r d; do
	n=$((n + 1))
	head -c $((n * 37 % 4096)) /dev/urandom >"dst/${d:+$d/}pcopy-added.$n"
done <dirs
snap() { find dst -printf '%P %y %m %U:%G %T@ %C@ %s %i %l\n' | sort; }
snap >before
"$PCOPY" -n -u --delete src dst >dry.out 2>dry.err || { cat dry.err; exit 1; }
snap >after
cmp -s before after || { echo "FAIL: -n changed dst"; diff before after | head; exit 1; }
"$PCOPY" -v -u --delete src dst >real.out 2>real.err || { cat real.err; exit 1; }
grep '^delete ' dry.out | sort >dry.del
grep '^delete ' real.out | sort >real.del
echo "dry run: $(wc -l <dry.del) delete lines; real run: $(wc -l <real.del); summary: $(tail -n 1 real.err)"
diff dry.del real.del >/dev/null || { echo "FAIL: dry run and real run differ"; diff dry.del real.del | head; exit 1; }
want=$( (sed 's|^|delete |' removed; sed 's|^|delete |' dirs | awk '{ n++; d = substr($0, 8); print "delete " (d == "" ? "" : d "/") "pcopy-added." n }') | sort)
[ "$want" = "$(cat real.del)" ] || { echo "FAIL: deleted other entries than the 2,000 expected"; diff <(echo "$want") real.del | head; exit 1; }
left=$(rsync -aHAXnc --delete --itemize-changes src/ dst/ | head -n 5)
[ -z "$left" ] || { echo "FAIL: rsync -aHAXnc --delete --itemize-changes:"; echo "$left"; exit 1; }
echo "ok: -n and the real run agree, 2,000 entries deleted, rsync -aHAXnc --delete --itemize-changes prints nothing"
