#!/usr/bin/env bash
# mirror.sh -- race pcopy's mirror re-run against rsync's on an unchanged copy.
#
# usage: bench/mirror.sh [--rounds N] [--src DIR] [--work DIR] [--checksum]
#                        [--out FILE.md]
#
#   --src DIR     the tree to mirror (default: the Linux 6.12 source from
#                 Debian's linux-source-6.12, /var/tmp/ksrc/linux-source-6.12,
#                 which /work/shared/bench/mkkernel.sh or bench/mkcorpus.sh's
#                 real corpus can stand in for)
#   --work DIR    where the mirror lives (default /var/tmp/pcopy-mirror: the
#                 same file system as the default SOURCE); made once with
#                 cp -a and kept for the next run: delete it afterwards
#   --rounds N    rounds (default 3)
#   --checksum    race `pcopy -q -u -c` against `rsync -aHc` instead of
#                 `pcopy -q -u --delete` against `rsync -aH --delete`
#   --out FILE.md also write the report to FILE.md
#
# Every run is a re-run on a DEST that is already an exact copy of SOURCE, the
# common case of a periodic mirror: the cost is walking both trees (and with
# --checksum reading both).  The commands run round-robin, the order rotating
# by one each round, warm cache (one untimed run of each first).  `control` is
# rsync again: its ratio to rsync shows the noise.  Wall time from bash's
# EPOCHREALTIME; user+sys from `times` of the subshell.  Afterwards the DEST
# must still compare equal: rsync -aHAXnc --delete --itemize-changes prints
# nothing.  PCOPY (env) names the binary; default ./pcopy at the repo root.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PCOPY=${PCOPY:-$(dirname "$HERE")/pcopy}
src=/var/tmp/ksrc/linux-source-6.12 work=/var/tmp/pcopy-mirror rounds=3 ck=0 out=
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--src) src=${2:?}; shift ;;
	--work) work=${2:?}; shift ;;
	--rounds) rounds=${2:?}; shift ;;
	--checksum) ck=1 ;;
	--out) out=${2:?}; shift ;;
	-h|--help) usage ;;
	*) echo "mirror: unknown argument: $1" >&2; usage ;;
	esac
	shift
done
[ -x "$PCOPY" ] || { echo "mirror: $PCOPY: not executable (run make)" >&2; exit 2; }
[ -d "$src" ] || { echo "mirror: $src: no such directory" >&2; exit 2; }
command -v rsync >/dev/null || { echo "mirror: rsync missing" >&2; exit 2; }
dst=$work/dst
mkdir -p "$work"
if [ ! -e "$work/.done" ]; then
	echo "mirror: making the mirror $dst (cp -a, once)" >&2
	rm -rf "$dst" && cp -a "$src" "$dst" && touch "$work/.done" || exit 2
fi

if [ $ck -eq 1 ]; then
	names=(pcopy rsync control)
	cmds=("$PCOPY -q -u -c \"\$SRC\" \"\$DST\""
	    "rsync -aHc \"\$SRC/\" \"\$DST/\""
	    "rsync -aHc \"\$SRC/\" \"\$DST/\"")
	what="-u -c (compare contents) on an unchanged tree"
else
	names=(pcopy rsync control)
	cmds=("$PCOPY -q -u --delete \"\$SRC\" \"\$DST\""
	    "rsync -aH --delete \"\$SRC/\" \"\$DST/\""
	    "rsync -aH --delete \"\$SRC/\" \"\$DST/\"")
	what="mirror re-run (-u --delete) on an unchanged tree"
fi
n=${#names[@]}
export SRC=$src DST=$dst

# run I: run command I once, print "wall cpu" (seconds) or fail.
run() {
	local t0 t1 c
	t0=$EPOCHREALTIME
	c=$( (eval "${cmds[$1]}" >/dev/null || exit 1; times) | tail -n 1) || return 1
	t1=$EPOCHREALTIME
	# children's user and sys, "0m1.234s 0m0.567s"
	set -- $c
	awk -v a="$t0" -v b="$t1" -v u="$1" -v s="$2" 'function sec(x,  m) {
		m = x; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", x); sub(/s$/, "", x)
		return m * 60 + x }
	BEGIN { printf "%.3f %.2f\n", b - a, sec(u) + sec(s) }'
}

for ((i = 0; i < n; i++)); do          # warm up, untimed
	run $i >/dev/null || { echo "mirror: ${names[$i]} failed" >&2; exit 1; }
done
declare -A wall cpu
for ((r = 0; r < rounds; r++)); do
	for ((k = 0; k < n; k++)); do
		i=$(((k + r) % n))
		res=$(run $i) || { echo "mirror: ${names[$i]} failed" >&2; exit 1; }
		wall[$r,$i]=${res% *}
		cpu[$r,$i]=${res#* }
		echo "mirror: round $((r + 1)) ${names[$i]}: ${res% *} s" >&2
	done
done
left=$(rsync -aHAXnc --delete --itemize-changes "$src/" "$dst/" | head -n 5)

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
{
	echo "### $what"
	echo
	echo "SOURCE $src ($(find "$src" | wc -l) entries), $rounds rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| command | median wall s | min | max | median user+sys s | ratio to rsync |"
	echo "|---|---|---|---|---|---|"
	for ((i = 0; i < n; i++)); do
		w=$(for ((r = 0; r < rounds; r++)); do echo "${wall[$r,$i]}"; done)
		c=$(for ((r = 0; r < rounds; r++)); do echo "${cpu[$r,$i]}"; done)
		ratio=$(for ((r = 0; r < rounds; r++)); do
			awk -v a="${wall[$r,$i]}" -v b="${wall[$r,1]}" 'BEGIN { print a / b }'
		done | median)
		printf '| %s: `%s` | %s | %s | %s | %s | %.2f |\n' "${names[$i]}" \
		    "$(eval echo "${cmds[$i]}" | sed "s|$PCOPY|pcopy|; s|$src|SRC|; s|$dst|DST|")" \
		    "$(echo "$w" | median)" "$(echo "$w" | sort -g | head -n 1)" \
		    "$(echo "$w" | sort -g | tail -n 1)" "$(echo "$c" | median)" "$ratio"
	done
	echo
	if [ -z "$left" ]; then
		echo "verify: ok (rsync -aHAXnc --delete --itemize-changes prints nothing)"
	else
		echo "verify: DEST differs: $left"
	fi
} | tee ${out:+"$out"}
