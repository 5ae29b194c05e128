#!/usr/bin/env bash
# rss.sh -- peak RSS of pcopy's parent and of each of its workers.
#
# usage: bench/rss.sh [--interval SECS] [--entries N] [--only small|big]
#
# Two copies, both on tmpfs:
#   (a) small: the 100,000-file corpus (bench/mkcorpus.sh) under
#       /dev/shm/pcopy-bench/corpus/small/src;
#   (b) big:   N empty files (default 2,000,000) in 2,000 directories,
#       written by a python3 loop (os.mknod, no fork per file) into a private
#       tmpfs mounted at /dev/shm/pcopy-bench/rss-fs for this run.  A copy
#       needs twice N inodes, more than /dev/shm has by default on a 24 GiB
#       machine (3.08 M); the private mount sets nr_inodes, and unmounting it
#       at the end frees the 4 M inodes at once (rm -rf would take minutes).
#       Without mount rights the tree goes in /dev/shm itself if it has the
#       inodes, else the run stops with a message.
#
# Method.  pcopy runs under /usr/bin/time -f %M; the parent is the one child
# of that time process.  Every INTERVAL seconds (default 0.1) this script
# reads VmHWM (the kernel's own peak-RSS high-water mark of one process, so
# no peak between two samples is lost, only growth after the last sample)
# from /proc/PARENT/status, lists the parent's children from
# /proc/PARENT/task/*/children (their children too, should workers fork),
# and reads each one's VmHWM; it keeps the last value seen per pid.  The
# sampling loop uses only bash builtins (the wait is `read -t` on a pipe
# that never delivers), so sampling itself forks nothing.
#   /usr/bin/time's %M is getrusage(RUSAGE_CHILDREN).ru_maxrss of the time
#   process: the largest peak of ANY one process of the tree, parent or
#   worker, exact but not telling which; it is printed as a cross-check.
#   If it is above both polled maxima, the polling missed the last growth.
#   The two may differ by ~0.1 MiB either way: the kernel's RSS counters are
#   per-CPU approximations.
# A worker's VmHWM includes the parent's pages it shares after fork(): the
# kernel starts a child's high-water mark at the RSS it inherits, so
# forking the workers before the parent grows keeps them small.
# Sizes: kB in /proc are KiB; targets are read as MiB:
#   parent <= 8 MiB (100 k files), <= 64 MiB (2 M entries); each worker <= 2 MiB.
#
# PCOPY (env) names the binary (default ./pcopy at the repo root); extra
# arguments may go in PCOPY_ARGS (default none: pcopy's default -j).
# Exit status: 0 if every target is met, 1 if one is missed or a copy failed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PCOPY=${PCOPY:-$REPO/pcopy}
[ -e "$PCOPY" ] && PCOPY=$(readlink -f "$PCOPY")
read -r -a PARGS <<<"${PCOPY_ARGS:-}"
BASE=${PCOPY_BENCH_SHM:-/dev/shm/pcopy-bench}
interval=0.1 entries=2000000 only=""
DIRS=2000

while [ $# -gt 0 ]; do
	case $1 in
	--interval) interval=${2:?}; shift ;;
	--entries) entries=${2:?}; shift ;;
	--only) only=${2:?}; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
	*) echo "rss: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done
case $only in ''|small|big) ;; *) echo "rss: --only small|big" >&2; exit 2 ;; esac
[ -x "$PCOPY" ] || { echo "rss: pcopy not found at $PCOPY (build it or set PCOPY=...)" >&2; exit 1; }
if [ ! -x /usr/bin/time ]; then  # Debian package `time`
	echo "rss: /usr/bin/time missing: installing Debian package 'time'" >&2
	{ apt-get install -y time || { apt-get update && apt-get install -y time; }; } >&2 || exit 1
fi

log() { echo "rss: $*" >&2; }
MNT=$BASE/rss-fs
mounted=0
cleanup() {
	cd /
	rm -rf "$BASE/rss-dst"
	if [ $mounted = 1 ]; then umount "$MNT" && rmdir "$MNT"; fi
	if [ -n "${big:-}" ] && [ $mounted = 0 ]; then rm -rf "$big" "$BASE/rss-dst"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

exec {SLEEPFD}<> <(:)  # `read -t` on this never returns data: a fork-free sleep

# hwm PID: set HW to the VmHWM of PID in KiB (0 if gone).
hwm() {
	local k v
	HW=0
	while read -r k v _; do
		if [ "$k" = VmHWM: ]; then HW=$v; return; fi
	done 2>/dev/null <"/proc/$1/status"
}

# descendants PID: set DESC to the pids of PID's children, grandchildren...
descendants() {
	local queue=("$1") p f kids
	DESC=()
	while [ ${#queue[@]} -gt 0 ]; do
		p=${queue[0]}; queue=("${queue[@]:1}")
		for f in /proc/"$p"/task/*/children; do
			[ -r "$f" ] || continue
			kids=()
			read -r -a kids 2>/dev/null <"$f" || true
			DESC+=("${kids[@]}"); queue+=("${kids[@]}")
		done
	done
}

# measure LABEL SRC DST PARENT_TARGET_KIB: run pcopy, poll, print a report
# block; return 1 if a target is missed or the copy failed.
measure() {
	local label=$1 src=$2 dst=$3 ptarget=$4 wtarget=2048 tf=/tmp/rss-time.$$ lf=/tmp/rss-log.$$
	local tpid ppid="" kids rc t0 t1 samples=0 p status=0 n_src n_dst
	declare -A whwm=()
	local phwm=0
	rm -rf "$dst"; sync
	t0=$EPOCHREALTIME
	/usr/bin/time -f %M -o "$tf" "$PCOPY" -q "${PARGS[@]}" "$src" "$dst" >"$lf" 2>&1 </dev/null &
	tpid=$!
	while kill -0 "$tpid" 2>/dev/null; do
		if [ -z "$ppid" ]; then
			kids=()  # (the file has no newline: read fills kids and returns 1)
			read -r -a kids 2>/dev/null <"/proc/$tpid/task/$tpid/children" || true
			ppid=${kids[0]:-}
		fi
		if [ -n "$ppid" ]; then
			hwm "$ppid"; [ "$HW" -gt "$phwm" ] && phwm=$HW
			descendants "$ppid"
			for p in "${DESC[@]}"; do
				hwm "$p"
				[ "$HW" -gt "${whwm[$p]:-0}" ] && whwm[$p]=$HW
			done
			samples=$((samples + 1))
		fi
		read -r -t "$interval" -u "$SLEEPFD" _ || true
	done
	wait "$tpid"; rc=$?
	t1=$EPOCHREALTIME
	local tm; tm=$(tail -n 1 "$tf")
	local wall; wall=$(awk -v a="${t0/,/.}" -v b="${t1/,/.}" 'BEGIN { printf "%.2f", b - a }')
	mib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
	verdict() { if [ "$1" -le "$2" ]; then echo "ok"; else echo "OVER"; fi; }

	echo "## $label"
	echo "source: $src"
	if [ "$rc" != 0 ]; then
		echo "pcopy FAILED: exit $rc; last lines:"; tail -n 5 "$lf" | sed 's/^/    /'
		status=1
	else
		n_src=$(find "$src" | wc -l); n_dst=$(find "$dst" | wc -l)
		echo "copy: exit 0 in $wall s; entries: source $n_src, copy $n_dst$([ "$n_src" = "$n_dst" ] || echo '  <-- MISMATCH')"
		[ "$n_src" = "$n_dst" ] || status=1
	fi
	echo "samples: $samples at ${interval}s"
	if [ $samples = 0 ]; then
		echo "NO SAMPLES: pcopy ended before the first one; only the cross-check below holds"
		status=1
	fi
	echo "parent pid $ppid: peak RSS (VmHWM) $(mib "$phwm")  target <= $(mib "$ptarget"): $(verdict "$phwm" "$ptarget")"
	[ "$phwm" -le "$ptarget" ] || status=1
	local max=0 nw=0
	for p in $(printf '%s\n' "${!whwm[@]}" | sort -n); do
		nw=$((nw + 1))
		echo "  worker pid $p: peak RSS (VmHWM) $(mib "${whwm[$p]}")  target <= $(mib $wtarget): $(verdict "${whwm[$p]}" $wtarget)"
		[ "${whwm[$p]}" -gt "$max" ] && max=${whwm[$p]}
		[ "${whwm[$p]}" -le $wtarget ] || status=1
	done
	echo "workers seen: $nw; largest worker peak $(mib "$max")"
	echo "cross-check: /usr/bin/time %M (largest peak of any one process, exact) $(mib "${tm:-0}")"
	if [ "${tm:-0}" -gt "$phwm" ] && [ "${tm:-0}" -gt "$max" ]; then
		echo "  note: above both polled peaks: growth after the last sample was missed (try --interval 0.02)"
	fi
	echo
	rm -f "$tf" "$lf"
	return $status
}

status=0
echo "# pcopy peak RSS ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r), pcopy: $(timeout 5 "$PCOPY" --version 2>&1 </dev/null | head -n 1))"
echo

if [ "$only" != big ]; then
	mkdir -p "$BASE/corpus"
	"$HERE/mkcorpus.sh" "$BASE/corpus" small || exit 1
	measure "small corpus: 100,000 files in 500 directories" "$BASE/corpus/small/src" "$BASE/rss-dst" 8192 || status=1
	rm -rf "$BASE/rss-dst"
fi

if [ "$only" != small ]; then
	need=$((2 * (entries + DIRS) + 10000))
	mkdir -p "$MNT"
	if mountpoint -q "$MNT" || mount -t tmpfs -o "size=256m,nr_inodes=$need,mode=755" pcopy-rss "$MNT"; then
		mounted=1
		big=$MNT/src dst=$MNT/dst
	else
		rmdir "$MNT" 2>/dev/null
		free=$(df --output=iavail "$BASE" | tail -n 1)
		if [ "$free" -lt "$need" ]; then
			echo "rss: cannot mount a tmpfs and $BASE has $free free inodes, $need needed" >&2
			exit 1
		fi
		big=$BASE/rss-big dst=$BASE/rss-dst
		rm -rf "$big"
	fi
	t0=$EPOCHREALTIME
	python3 - "$big" "$entries" "$DIRS" <<'EOF' || exit 1
import os, stat, sys
root, n, ndirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mode = stat.S_IFREG | 0o644
os.mkdir(root)
per = -(-n // ndirs)                # files per directory, rounded up
made = 0
for d in range(ndirs):
    sub = os.path.join(root, "d%04d" % d)
    os.mkdir(sub)
    for f in range(min(per, n - made)):
        os.mknod(os.path.join(sub, "f%04d" % f), mode)
    made += min(per, n - made)
EOF
	t1=$EPOCHREALTIME
	log "built $entries empty files in $DIRS dirs at $big in $(awk -v a="${t0/,/.}" -v b="${t1/,/.}" 'BEGIN { printf "%.1f", b - a }') s"
	measure "big tree: $entries empty files in $DIRS directories" "$big" "$dst" 65536 || status=1
fi
exit $status
