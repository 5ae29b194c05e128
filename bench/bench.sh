#!/usr/bin/env bash
# bench.sh -- race pcopy against cp -a, rsync, tar and xargs+cp on fixed corpora.
#
# usage: bench/bench.sh [--quick] [--rounds N] [--corpus small,real,large]
#                       [--fs shm,disk] [--tools LIST] [--timeout SECS]
#                       [--drop-caches] [--out FILE.md]
#
#   --quick        1 round (default corpora small,real; large only if asked for)
#   --rounds N     rounds per corpus x fs (default 3)
#   --corpus LIST  any of small,real,large (default small,real); built by
#                  bench/mkcorpus.sh on first use and kept for reuse
#   --fs LIST      shm = tmpfs under /dev/shm/pcopy-bench,
#                  disk = ext4 under /var/tmp/pcopy-bench (default shm,disk);
#                  source and destination are always on the same file system
#   --tools LIST   subset of cp-a,control,pcopy,rsync,tar,xargs (default all;
#                  cp-a is always run: every ratio is against it)
#   --timeout S    kill a copier after S seconds, reported as failed (1800)
#   --drop-caches  echo 3 >/proc/sys/vm/drop_caches before every run (cold
#                  cache; default is warm cache)
#   --out FILE.md  also write the report, with a machine header, to FILE.md
#                  and every run's raw figures to FILE.runs.tsv
#
# PCOPY (env) names the binary under test; default: ./pcopy at the repo root.
# It is run as: $PCOPY -q SRC DST  (default -j).
#
# Per corpus x fs the tools run round-robin; the order rotates by one each
# round.  Before each run DST is removed and `sync` is called.  Each run is
# timed by /usr/bin/time (user, sys, peak RSS of the largest process of the
# run) and by bash's EPOCHREALTIME (wall, microseconds).  A run that exits
# non-zero is reported under its table and left out of its statistics.
# Once per corpus x fs, outside the timing, pcopy's copy is checked against
# the source with diff -r and rsync -aHAXnc --itemize-changes.
#
# One untimed cp -a per corpus x fs warms up before round 1.
# Progress goes to stderr; the Markdown report to stdout.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PCOPY=${PCOPY:-$REPO/pcopy}
[ -e "$PCOPY" ] && PCOPY=$(readlink -f "$PCOPY")
SHM_BASE=${PCOPY_BENCH_SHM:-/dev/shm/pcopy-bench}
DISK_BASE=${PCOPY_BENCH_DISK:-/var/tmp/pcopy-bench}
ALL_TOOLS="cp-a,control,pcopy,rsync,tar,xargs"

rounds=3 corpora=small,real fss=shm,disk tools=$ALL_TOOLS out="" tmo=1800 drop=0
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
rounds_set=0
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--rounds) rounds=${2:?}; rounds_set=1; shift ;;
	--corpus) corpora=${2:?}; shift ;;
	--fs) fss=${2:?}; shift ;;
	--tools) tools=${2:?}; shift ;;
	--timeout) tmo=${2:?}; shift ;;
	--drop-caches) drop=1 ;;
	--out) out=${2:?}; shift ;;
	-h|--help) usage ;;
	*) echo "bench: unknown argument: $1" >&2; usage ;;
	esac
	shift
done
[ "${quick:-0}" = 1 ] && [ $rounds_set = 0 ] && rounds=1
case $rounds in ''|*[!0-9]*|0) echo "bench: --rounds needs a positive integer" >&2; exit 2 ;; esac

IFS=, read -r -a CORPORA <<<"$corpora"
IFS=, read -r -a FSS <<<"$fss"
IFS=, read -r -a TOOLS <<<"$tools"
for c in "${CORPORA[@]}"; do case $c in small|real|large) ;; *) echo "bench: unknown corpus $c" >&2; exit 2 ;; esac; done
for f in "${FSS[@]}"; do case $f in shm|disk) ;; *) echo "bench: unknown fs $f" >&2; exit 2 ;; esac; done
have_cpa=0
for t in "${TOOLS[@]}"; do
	case $t in cp-a) have_cpa=1 ;; control|pcopy|rsync|tar|xargs) ;; *) echo "bench: unknown tool $t" >&2; exit 2 ;; esac
done
[ $have_cpa = 1 ] || TOOLS=(cp-a "${TOOLS[@]}")

# /usr/bin/time is Debian package `time`; install it if missing (we are root
# on the dev and CI machines), else give up: without it there is no user/sys/RSS.
if [ ! -x /usr/bin/time ]; then
	echo "bench: /usr/bin/time missing: installing Debian package 'time'" >&2
	{ apt-get install -y time || { apt-get update && apt-get install -y time; }; } >&2 ||
		{ echo "bench: could not install 'time'" >&2; exit 1; }
fi
for t in "${TOOLS[@]}"; do
	case $t in
	pcopy) [ -x "$PCOPY" ] || { echo "bench: pcopy not found at $PCOPY (build it or set PCOPY=...)" >&2; exit 1; } ;;
	rsync)
		if ! command -v rsync >/dev/null; then
			echo "bench: rsync missing: installing Debian package 'rsync'" >&2
			{ apt-get install -y rsync || { apt-get update && apt-get install -y rsync; }; } >&2 ||
				{ echo "bench: rsync not installed (apt-get install rsync, or --tools without it)" >&2; exit 1; }
		fi ;;
	esac
done

WORK=$(mktemp -d /tmp/pcopy-bench.XXXXXX)
GRAVES=()        # graveyards of earlier copies, removed at the very end
trap 'rm -rf "$WORK" "${GRAVES[@]}"' EXIT
RAW=$WORK/runs.tsv
: >"$RAW"
mkdir -p "$WORK/logs"

log() { echo "bench: $*" >&2; }
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

fsbase() { case $1 in shm) echo "$SHM_BASE" ;; disk) echo "$DISK_BASE" ;; esac; }

# set_cmd TOOL SRC DST: fill array CMD with the copier's command line.
set_cmd() {
	local s=$2 d=$3
	case $1 in
	cp-a|control) CMD=(cp -a "$s" "$d") ;;
	pcopy) CMD=("$PCOPY" -q "$s" "$d") ;;
	rsync) CMD=(rsync -aH "$s/" "$d/") ;;
	tar) CMD=(bash -c 'set -o pipefail; mkdir "$2" && tar -C "$1" -cf - . | tar -C "$2" -xpf -' tar "$s" "$d") ;;
	# naive parallel peer: make the directories, then 4 cp -a --parents at a time
	xargs) CMD=(bash -c 'set -eo pipefail; mkdir "$2"; cd "$1"
		find . -mindepth 1 -type d -print0 | (cd "$2" && xargs -0 -r mkdir -p)
		find . ! -type d -print0 | xargs -0 -r -n 100 -P 4 cp -a --parents -t "$2"' xargs "$s" "$d") ;;
	esac
}

# ext4 without a journal (the disk of the dev and CI machines: /proc/fs/jbd2
# is empty) avoids reusing an inode deleted less than 60 s ago, 360 s if
# its inode-table block is dirty, as it is while a copy fills that block.
# recently_deleted() checks each free inode it meets, so a copy into the
# space of a just-removed one walks past every freed inode, per create:
# cp -a of the real corpus took 23.4 s right after rm -rf of the previous
# copy, 2.7 s without (perf: recently_deleted() under ext4_create).  The
# check only looks at inode-table blocks still in the buffer cache; so on
# such a file system, after rm -rf + sync, we drop the clean page cache
# (echo 1 > drop_caches: the freed inodes' table blocks go) and read the
# source back in, untimed, to keep the cache warm for the source.
NOJ=0   # 1 while the current table is on such a file system, with >= 1000 entries
#
# Dropping the cache is not enough when several processes create files at
# once: the allocator reads the table blocks back in and every process then
# walks past the same freed inodes (pcopy -j2 spent 2.5x the CPU of -j1 in
# that state, 3x its time in a copy right after rm -rf).  No user copies
# into the inodes of a tree deleted seconds earlier, so on such a file
# system we do not delete between runs at all: each earlier copy is renamed
# into a graveyard (no inode is freed) and the graveyards are removed when
# the whole benchmark ends.  That needs disk space for every run's copy;
# without it we fall back to rm -rf + dropping the cache (FRESH=0).
FRESH=0
GRAVE=

nojournal_ext4() {  # DIR: is DIR on ext4 mounted without a journal?
	local src dev
	[ "$(findmnt -n -o FSTYPE --target "$1")" = ext4 ] || return 1
	src=$(findmnt -n -o SOURCE --target "$1") || return 1
	dev=$(basename "$(readlink -f "$src")")
	! compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null
}

# prepare_dst DST SRC: remove DST (or move it to the graveyard) and flush,
# so every run starts alike.
prepare_dst() {
	if [ $FRESH = 1 ]; then
		[ ! -e "$1" ] || mv "$1" "$GRAVE/$RANDOM$RANDOM$RANDOM"
		sync
		return
	fi
	rm -rf "$1"
	sync
	if [ $drop = 1 ]; then
		echo 3 >/proc/sys/vm/drop_caches
	elif [ $NOJ = 1 ]; then
		if echo 1 2>/dev/null >/proc/sys/vm/drop_caches; then
			find "$2" -type f -print0 | xargs -0 -r cat >/dev/null
			sync
		else
			NOJ_FAILED=1
		fi
	fi
}

# run_one CORPUS FS ROUND TOOL SRC DST: time one copy, append a row to $RAW.
run_one() {
	local c=$1 f=$2 r=$3 t=$4 s=$5 d=$6 tf=$WORK/time.out lf t0 t1 rc u y m
	lf=$WORK/logs/$c-$f-$t-r$r.log
	set_cmd "$t" "$s" "$d"
	prepare_dst "$d" "$s"
	: >"$tf"
	t0=$(now_us)
	/usr/bin/time -f '%e %U %S %M' -o "$tf" timeout "$tmo" "${CMD[@]}" >"$lf" 2>&1 </dev/null
	rc=$?
	t1=$(now_us)
	read -r _ u y m < <(tail -n 1 "$tf") || true
	local wall
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$f" "$r" "$t" "$rc" "$wall" "${u:-0}" "${y:-0}" "${m:-0}" >>"$RAW"
	if [ $rc = 0 ]; then
		log "[$c/$f round $r] $t: ${wall}s (user ${u}s sys ${y}s rss ${m}KiB)"
	else
		log "[$c/$f round $r] $t: FAILED exit $rc after ${wall}s; log tail:"
		tail -n 5 "$lf" | sed 's/^/    /' >&2
	fi
}

# verify SRC DST: one untimed pcopy run, compared with the source.
# Prints the Markdown lines for the report.
verify() {
	local s=$1 d=$2 rc vf=$WORK/verify.out
	prepare_dst "$d" "$s"
	"$PCOPY" -q "$s" "$d" >"$vf" 2>&1 </dev/null
	rc=$?
	if [ $rc != 0 ]; then
		echo "verify: FAILED: pcopy exited $rc"
		{ echo '```'; head -n 20 "$vf"; echo '```'; }
		return
	fi
	diff -rq --no-dereference "$s" "$d" >"$vf" 2>&1
	if command -v rsync >/dev/null; then
		rsync -aHAXnc --itemize-changes "$s/" "$d/" >>"$vf" 2>&1
	else
		echo "(rsync not installed: verified with diff -r only)" >&2
	fi
	if [ -s "$vf" ]; then
		echo "verify: DIFFERENCES ($(wc -l <"$vf") lines; first 20):"
		{ echo '```'; head -n 20 "$vf"; echo '```'; }
	else
		echo "verify: ok"
	fi
}

# table CORPUS FS: Markdown table from $RAW for one corpus x fs.
table() {
	awk -F'\t' -v c="$1" -v f="$2" -v tools="$(IFS=,; echo "${TOOLS[*]}")" '
	function median(a, n,   i, j, x, b) {
		for (i = 1; i <= n; i++) b[i] = a[i]
		for (i = 2; i <= n; i++) { x = b[i]; for (j = i - 1; j >= 1 && b[j] > x; j--) b[j + 1] = b[j]; b[j + 1] = x }
		return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
	}
	$1 == c && $2 == f {
		t = $4; r = $3; runs[t]++
		if ($5 == 0) {
			k = ++ok[t]; W[t, k] = $6; U[t, k] = $7; S[t, k] = $8
			if ($9 > M[t]) M[t] = $9
			wr[t, r] = $6; okr[t, r] = 1; R[r] = 1
		} else {
			fails = fails sprintf("- %s round %s: exit %s%s after %.2f s\n", t, r, $5, $5 == 124 ? " (timeout)" : "", $6)
		}
	}
	END {
		print "| tool | median wall (s) | min (s) | max (s) | median user (s) | median sys (s) | max RSS (MiB) | ratio to cp-a (median) | ok runs |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		nt = split(tools, T, ",")
		for (i = 1; i <= nt; i++) {
			t = T[i]
			if (!(t in runs)) continue
			if (!ok[t]) { printf "| %s | FAILED | | | | | | | 0/%d |\n", t, runs[t]; continue }
			n = ok[t]; mn = mx = W[t, 1]
			for (k = 1; k <= n; k++) { w[k] = W[t, k]; u[k] = U[t, k]; s[k] = S[t, k]; if (w[k] < mn) mn = w[k]; if (w[k] > mx) mx = w[k] }
			nr = 0
			for (r in R) if (okr[t, r] && okr["cp-a", r]) q[++nr] = wr[t, r] / wr["cp-a", r]
			ratio = nr ? sprintf("%.2f", median(q, nr)) : "n/a"
			if (t == "control") cr = nr ? median(q, nr) : -1
			printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %s | %d/%d |\n", t, median(w, n), mn, mx, median(u, n), median(s, n), M[t] / 1024, ratio, n, runs[t]
		}
		print ""
		if ("control" in runs) {
			if (cr < 0) print "control: no round where both cp-a and control succeeded: noise unknown"
			else if (cr > 1.15 || cr < 0.85) printf "**too noisy to quote** (A/A control ratio %.2f, more than 15%% from 1.00)\n", cr
			else printf "A/A control ratio %.2f (within 15%% of 1.00)\n", cr
		}
		if (fails != "") { print ""; print "failed runs (left out of the figures):"; printf "%s", fails }
	}' "$RAW"
}

# failure_logs CORPUS FS: the last lines of each failed run's output.
failure_logs() {
	local c r t rc rest
	while IFS=$'\t' read -r c _ r t rc rest; do
		echo
		echo "$t round $r (exit $rc), last lines of its output:"
		echo '```'
		tail -n 5 "$WORK/logs/$c-$2-$t-r$r.log"
		echo '```'
	done < <(awk -F'\t' -v c="$1" -v f="$2" '$1 == c && $2 == f && $5 != 0' "$RAW")
}

header() {
	local kv
	echo "# pcopy benchmark"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- command: bench/bench.sh ${ARGS_SEEN}"
	echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
	for f in "${FSS[@]}"; do
		kv=$(fsbase "$f")
		mkdir -p "$kv"
		echo "- fs $f: $kv on $(df -T "$kv" | awk 'NR == 2 { print $2 " (" $1 ")" }')$(nojournal_ext4 "$kv" && echo ', no journal: page cache dropped + source re-read before each run (see bench/README.md)')"
	done
	if [ -x "$PCOPY" ]; then
		echo "- pcopy: $PCOPY: $(timeout 5 "$PCOPY" --version 2>&1 </dev/null | head -n 1 || true)"
	fi
	echo "- peers: $(cp --version | head -n 1); $(rsync --version 2>/dev/null | head -n 1); $(tar --version | head -n 1)"
	echo "- rounds: $rounds, round-robin with the order rotated each round; warm page cache$([ $drop = 1 ] && echo ' dropped before each run' || true); DST removed (on ext4 without journal: renamed aside) + sync before each run"
	echo "- ratio = tool wall / cp-a wall in the same round; the column is the median over rounds"
	echo
}

# the effective options, for the header
ARGS_SEEN="--rounds $rounds --corpus $corpora --fs $fss --tools $(IFS=,; echo "${TOOLS[*]}")$([ $drop = 1 ] && echo ' --drop-caches' || true)"

REPORT=$WORK/report.md
header >"$REPORT"
cat "$REPORT"

for f in "${FSS[@]}"; do
	base=$(fsbase "$f")
	mkdir -p "$base/corpus" || exit 1
	for c in "${CORPORA[@]}"; do
		"$HERE/mkcorpus.sh" "$base/corpus" "$c" || { log "building corpus $c on $f failed"; exit 1; }
		src=$base/corpus/$c/src dst=$base/dst
		NOJ=0 NOJ_FAILED=0
		if nojournal_ext4 "$base" && [ "$(find "$src" | head -n 1000 | wc -l)" = 1000 ]; then NOJ=1; fi
		FRESH=0
		if [ $NOJ = 1 ] && [ $drop = 0 ]; then
			need=$(( ($(du -sk "$src" | cut -f1) + 4 * $(find "$src" | wc -l)) * (rounds * ${#TOOLS[@]} + 3) ))
			avail=$(df -Pk "$base" | awk 'NR == 2 { print $4 }')
			if [ "$avail" -gt $((need + 4194304)) ]; then
				FRESH=1
				GRAVE=$base/graveyard.$$
				mkdir -p "$GRAVE"
				GRAVES+=("$GRAVE")
			else
				log "not enough space on $base to keep every copy ($((need / 1048576)) GiB): rm -rf + drop_caches between runs instead"
			fi
		fi
		desc="$(find "$src" | wc -l) entries, $(du -sh --apparent-size "$src" | cut -f1)B"
		log "== corpus $c on $f ($desc): verify, then $rounds round(s) of: ${TOOLS[*]}"
		section=$WORK/section.md
		{
			echo "## $c on $f ($desc at $src)"
			echo
			if [ $FRESH = 1 ]; then
				echo "ext4 without journal: no copy is deleted during the benchmark (each earlier copy is renamed aside), so no run creates files among just-freed inodes (see bench/README.md)" && echo
			elif [ $NOJ = 1 ] && [ $drop = 0 ]; then
				echo "ext4 without journal: page cache dropped and the source read back in before each run (see bench/README.md)" && echo
			fi
		} >"$section"
		if [[ " ${TOOLS[*]} " == *" pcopy "* ]]; then
			verify "$src" "$dst" >>"$section"
			echo >>"$section"
		fi
		# one untimed cp -a first: the first copy after a pause is often slow
		# (seen: 3.6 s then 2.3-2.7 s on tmpfs), which would tax round 1's first tool
		prepare_dst "$dst" "$src"
		cp -a "$src" "$dst" || log "warm-up cp -a failed"
		n=${#TOOLS[@]}
		for ((r = 1; r <= rounds; r++)); do
			for ((i = 0; i < n; i++)); do
				t=${TOOLS[(i + r - 1) % n]}
				run_one "$c" "$f" "$r" "$t" "$src" "$dst"
			done
		done
		prepare_dst "$dst" "$src"
		table "$c" "$f" >>"$section"
		failure_logs "$c" "$f" >>"$section"
		if [ "$NOJ_FAILED" = 1 ]; then
			printf '\n**could not drop the page cache (not root?)**: these disk figures include ext4'"'"'s recently-deleted-inode penalty\n' >>"$section"
		fi
		echo >>"$section"
		cat "$section"
		cat "$section" >>"$REPORT"
	done
done

if [ -n "$out" ]; then
	cp "$REPORT" "$out"
	{ printf 'corpus\tfs\tround\ttool\texit\twall_s\tuser_s\tsys_s\tmaxrss_kib\n'; cat "$RAW"; } >"${out%.md}.runs.tsv"
	log "report written to $out (raw runs: ${out%.md}.runs.tsv)"
fi
