#!/usr/bin/env bash
# progress-accuracy.sh -- how far pcopy's progress line is from the truth.
#
# usage: bench/progress-accuracy.sh [--workloads LIST] [--dir DIR] [--pipe]
#                                   [--runs N] [--out FILE.md] [--keep]
#
#   --workloads LIST  any of one,small,real,mixed,sparse (default all five):
#       one     one 2 GiB file (zeros: tmpfs stores them like any data)
#       small   the small corpus of bench/mkcorpus.sh (100,000 files, 0.9 GB)
#       real    the real corpus of bench/mkcorpus.sh (/usr/include, /usr/share)
#       mixed   50,000 small files (1 B - 64 KiB) in 50 directories, then 3
#               files of 500 MB in a directory the walk reaches last
#       sparse  4 sparse files of 16 GiB, each holding 512 MiB of data in
#               128 extents of 4 MiB, beside 2,000 small files
#   --dir DIR   where the workloads are built and copied (default
#               /dev/shm/pcopy-progress; small and real are built by
#               bench/mkcorpus.sh into DIR/corpus and kept for the next run)
#   --runs N    copy each workload N times, in rounds (every workload once,
#               then again), and end with a table of each measure's median
#               and worst over the N runs (default 1: one table row a run)
#   --pipe      run with --progress to a pipe (about a line a second)
#               instead of on a pseudo-terminal (ten lines a second)
#   --out FILE  also write the table to FILE (Markdown) and every sample to
#               FILE.samples.tsv
#   --keep      keep the built workloads (default: delete one, mixed and
#               sparse afterwards; the corpora always stay)
#
# On ext4 without a journal the copies are not deleted between runs but
# moved aside, and removed at the end (deleting them would slow the next
# runs; see bench/README.md): that needs room for every run's copy, about
# 8 GB a round of all five workloads.
#
# PCOPY (env) names the binary (default ./pcopy); PCOPY_ARGS (env) adds
# options, e.g. PCOPY_ARGS="-j 4".  Each run starts from an empty DEST.
#
# How it measures: pcopy runs on a pty 200 columns wide (or with --progress
# into a pipe); every line it draws is recorded with the time since the
# start.  The run's total time T is when pcopy exits.  For each line at time
# t the true fraction done is t/T and the true time left is T - t.
#   max |%-t/T|   largest |displayed percentage - 100 t/T| over lines after
#                 the first second that show a percentage (lines saying
#                 "scanning" show none; they are counted apart)
#   ETA err       median over lines after 20% of the run of
#                 (displayed ETA - (T - t)) / (T - t), where the displayed
#                 ETA "0:03" stands for 2.5-3.5 s (the point of that
#                 interval nearest the truth is taken); ETAs shown as lower
#                 bounds (">0:12", while scanning) are left out and counted
#   |ETA err|     the median of the absolute values
#   no rounding   the median of (displayed - (T - t)) / (T - t) as shown
#   back          times the percentage went down
#   late ?        lines showing "ETA ?" after the first 2 s
# Needs bash, python3 (stdlib), coreutils.  Run as root from the repo root.
set -euo pipefail

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

workloads=one,small,real,mixed,sparse
dir=/dev/shm/pcopy-progress
mode=pty
out=
keep=0
runs=1
while [ $# -gt 0 ]; do
	case $1 in
	--workloads) workloads=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--pipe) mode=pipe; shift ;;
	--out) out=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--runs) runs=$2; shift 2 ;;
	*) usage ;;
	esac
done
case $runs in ''|*[!0-9]*|0) usage ;; esac
here=$(cd "$(dirname "$0")" && pwd)
PCOPY=${PCOPY:-$here/../pcopy}
[ -x "$PCOPY" ] || { echo "no pcopy at $PCOPY (run make)" >&2; exit 2; }
PCOPY=$(cd "$(dirname "$PCOPY")" && pwd)/$(basename "$PCOPY")
corpus=$dir/corpus
mkdir -p "$dir"

# build_NAME: make the source tree, print its path.
build_one()
{
	if [ ! -e "$dir/one/.done" ]; then
		rm -rf "$dir/one"
		mkdir -p "$dir/one/src"
		head -c $((2 << 30)) /dev/zero >"$dir/one/src/big"
		touch "$dir/one/.done"
	fi
	echo "$dir/one/src"
}
build_small() { "$here/mkcorpus.sh" "$corpus" small >&2; echo "$corpus/small/src"; }
build_real() { "$here/mkcorpus.sh" "$corpus" real >&2; echo "$corpus/real/src"; }
build_mixed()
{
	if [ ! -e "$dir/mixed/.done" ]; then
		rm -rf "$dir/mixed"
		mkdir -p "$dir/mixed/src"
		python3 - "$dir/mixed/src" <<'EOF'
import os, random, sys
r = random.Random(11)
blob = os.urandom(65536)
top = sys.argv[1]
for d in range(50):
    p = os.path.join(top, "d%02d" % d)
    os.mkdir(p)
    for f in range(1000):
        n = int(min(65536, r.lognormvariate(8.0, 1.5)))
        with open(os.path.join(p, "f%04d" % f), "wb") as fh:
            fh.write(blob[:n])
EOF
		# the walk reads directories in readdir order: make "big" come
		# last (tmpfs lists newest first or oldest first, depending on
		# the kernel): renew the others' entries if it does not
		mkdir "$dir/mixed/src/big"
		if [ "$(ls -f "$dir/mixed/src" | grep -v '^\.' | tail -n 1)" != big ]; then
			for d in "$dir"/mixed/src/d*; do
				mv "$d" "$dir/mixed/tmp.$$" && mv "$dir/mixed/tmp.$$" "$d"
			done
		fi
		# hashed directories (ext4, xfs, btrfs) list by a hash of the
		# name: try other names until one comes last
		big=big k=0
		while [ "$(ls -f "$dir/mixed/src" | grep -v '^\.' | tail -n 1)" != "$big" ] &&
		    [ $k -lt 1000 ]; do
			mv "$dir/mixed/src/$big" "$dir/mixed/src/big$k"
			big=big$k k=$((k + 1))
		done
		[ "$(ls -f "$dir/mixed/src" | grep -v '^\.' | tail -n 1)" = "$big" ] ||
		    echo "warning: $big/ is not read last" >&2
		for n in 1 2 3; do
			head -c 500000000 /dev/zero >"$dir/mixed/src/$big/f$n"
		done
		touch "$dir/mixed/.done"
	fi
	echo "$dir/mixed/src"
}
build_sparse()
{
	if [ ! -e "$dir/sparse/.done" ]; then
		rm -rf "$dir/sparse"
		mkdir -p "$dir/sparse/src/small"
		for n in 1 2 3 4; do
			f=$dir/sparse/src/img$n
			truncate -s 16G "$f"
			for k in $(seq 0 127); do
				dd if=/dev/zero of="$f" bs=4M count=1 seek=$((k * 32)) conv=notrunc status=none
			done
		done
		(cd "$dir/sparse/src/small" && head -c 8192000 /dev/urandom | split -b 4096 -a 4 - f)
		touch "$dir/sparse/.done"
	fi
	echo "$dir/sparse/src"
}

# Right after rm -rf, ext4 without a journal checks each freed inode it
# meets when it creates a file, for 60 to 360 s (see bench/README.md):
# copies then run up to 3 times slower, and at a rate that changes within
# the run.  No user copies into a tree deleted seconds before, so there
# each earlier copy is moved into a graveyard, removed at the end.
nojournal_ext4()
{
	local src dev
	[ "$(findmnt -n -o FSTYPE --target "$1")" = ext4 ] || return 1
	src=$(findmnt -n -o SOURCE --target "$1") || return 1
	dev=$(basename "$(readlink -f "$src")")
	! compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null
}
grave=

# measure SRC NAME: copy SRC to a fresh DEST, print one Markdown row.
measure()
{
	if [ -n "$grave" ]; then
		[ ! -e "$dir/dst" ] || mv "$dir/dst" "$grave/$RANDOM$RANDOM$RANDOM"
	else
		rm -rf "$dir/dst"
	fi
	sync
	python3 - "$mode" "$1" "$dir/dst" "$2" "${out:+$out.samples.tsv}" "$runlog" "$PCOPY" ${PCOPY_ARGS:-} <<'EOF'
import fcntl, os, re, select, statistics, struct, subprocess, sys, termios, time
mode, src, dst, name, tsv, runlog, pcopy = sys.argv[1:8]
extra = sys.argv[8:]
cmd = [pcopy] + extra + (["--progress"] if mode == "pipe" else []) + [src, dst]
if mode == "pty":
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    err = slave
else:
    master, err = os.pipe()
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=err, start_new_session=(mode == "pty"))
os.close(err)
samples, cur, cur_t = [], b"", None
while True:
    r, _, _ = select.select([master], [], [], 0.5)
    if not r:
        if p.poll() is not None:
            break
        continue
    try:
        data = os.read(master, 65536)
    except OSError:
        data = b""
    now = time.monotonic() - t0
    if not data:
        break
    for ch in re.split(rb"([\r\n])", data):
        if ch in (b"\r", b"\n"):
            if cur.strip():
                samples.append((cur_t, cur.decode(errors="replace").strip()))
            cur, cur_t = b"", None
        elif ch:
            if cur_t is None:
                cur_t = now
            cur += ch
if cur.strip():
    samples.append((cur_t, cur.decode(errors="replace").strip()))
rc = p.wait()
T = time.monotonic() - t0
def secs(s):
    v = 0
    for part in s.split(":"):
        v = v * 60 + int(part)
    return v
pcterr, etaerr, etaraw, back, late, scan, lower, last, summary = [], [], [], 0, 0, 0, 0, -1, ""
for t, line in samples:
    if re.match(r"pcopy: \d+ files", line) or line.startswith("pcopy: interrupted"):
        summary = line
        continue
    m = re.search(r"(\d+(?:\.\d+)?)%", line)
    e = re.search(r"ETA (>?)(\?|[\d:]+)", line)
    if m:
        pct = float(m.group(1))
        if pct < last:
            back += 1
        last = pct
        if t >= 1:
            pcterr.append(abs(pct - 100 * t / T))
    elif "scanning" in line and t >= 1:
        scan += 1
    if e and e.group(2) == "?" and t >= 2:
        late += 1
    if e and e.group(2) != "?" and t >= 0.2 * T:
        if e.group(1):
            lower += 1
        elif T - t > 0:
            # "0:03" means 2.5 to 3.5 s: the error is the distance from
            # the truth to that interval (whole seconds are all it shows)
            v, left = secs(e.group(2)), T - t
            lo, hi = max(v - 0.5, 0), v + 0.5
            near = lo if left < lo else hi if left > hi else left
            etaerr.append((near - left) / left)
            etaraw.append((v - left) / left)
if tsv:
    with open(tsv, "a") as fh:
        for t, line in samples:
            fh.write("%s\t%.3f\t%.3f\t%s\n" % (name, t, T, line))
fmt = lambda v, f: (f % v) if v is not None else "-"
row = "| %s | %.2f | %d | %s | %d | %s | %s | %s | %d | %d | %d |" % (
    name, T, len(samples),
    fmt(max(pcterr) if pcterr else None, "%.1f"), scan,
    fmt(100 * statistics.median(etaerr) if etaerr else None, "%+.0f%%"),
    fmt(100 * statistics.median([abs(x) for x in etaerr]) if etaerr else None, "%.0f%%"),
    fmt(100 * statistics.median(etaraw) if etaraw else None, "%+.0f%%"),
    lower, back, late)
print(row)
print("  %s: exit %d; %s" % (name, rc, summary), file=sys.stderr)
with open(runlog, "a") as fh:   # for the summary of --runs: -1 for none
    fh.write("%s %.3f %.3f %.4f %.4f %d %d %d\n" % (name, T,
        max(pcterr) if pcterr else -1,
        statistics.median(etaerr) if etaerr else -1e9,
        statistics.median([abs(x) for x in etaerr]) if etaerr else -1,
        back, late, rc))
EOF
}

header="| workload | run s | lines | max \\|%-t/T\\| after 1 s | 'scanning' lines after 1 s | median ETA err after 20% | median \\|ETA err\\| | ETA err, no rounding allowance | ETA lower bounds | % backwards | 'ETA ?' after 2 s |
|---|---|---|---|---|---|---|---|---|---|---|"
{
	echo "pcopy: $PCOPY ${PCOPY_ARGS:-} ($mode); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
	echo
	echo "$header"
} | tee ${out:+"$out"}
[ -z "$out" ] || : >"$out.samples.tsv"
runlog=$(mktemp)
trap 'rm -f "$runlog"; [ -z "$grave" ] || rm -rf "$grave"' EXIT
for w in ${workloads//,/ }; do
	build_$w >/dev/null
done
rm -rf "$dir/dst"
if nojournal_ext4 "$dir"; then
	need=0
	for w in ${workloads//,/ }; do
		need=$((need + $(du -sk "$(build_$w 2>/dev/null)" | cut -f1)))
	done
	need=$((need * runs + 4194304))
	if [ "$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')" -gt "$need" ]; then
		grave=$dir/graveyard.$$
		mkdir -p "$grave"
	else
		echo "warning: no room on $dir to keep every copy ($((need >> 20)) GiB):" \
		    "rm -rf between runs, which slows ext4 without a journal" >&2
	fi
fi
r=1
while [ "$r" -le "$runs" ]; do
	for w in ${workloads//,/ }; do
		src=$(build_$w)
		row=$(measure "$src" "$w")
		echo "$row" | tee ${out:+-a "$out"}
	done
	r=$((r + 1))
done
if [ "$runs" -gt 1 ]; then
	python3 - "$runlog" "$runs" <<'EOF' | tee ${out:+-a "$out"}
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
print()
print("%s runs of each: median (worst) over the runs" % sys.argv[2])
print()
print("| workload | run s | max \\|%-t/T\\| after 1 s | median ETA err after 20% | median \\|ETA err\\| | % backwards | 'ETA ?' after 2 s | runs meeting every target |")
print("|---|---|---|---|---|---|---|---|")
def col(rs, i, worst, fmt, scale, none):
    v = [r[i] for r in rs if r[i] != none]
    if not v:
        return "-"
    return "%s (%s)" % (fmt % (scale * statistics.median(v)), fmt % (scale * worst(v)))
for name, rs in rows.items():
    # a run with no sample to judge (too short) meets what it cannot miss
    ok = sum(1 for r in rs if r[1] <= 15 and (r[2] == -1e9 or abs(r[2]) <= 0.30)
             and r[4] == 0 and r[5] == 0 and r[6] == 0)
    print("| %s | %s | %s | %s | %s | %d | %d | %d of %d |" % (name,
        col(rs, 0, max, "%.2f", 1, None), col(rs, 1, max, "%.1f", 1, -1),
        col(rs, 2, lambda v: max(v, key=abs), "%+.0f%%", 100, -1e9),
        col(rs, 3, max, "%.0f%%", 100, -1),
        sum(r[4] for r in rs), sum(r[5] for r in rs), ok, len(rs)))
EOF
fi
rm -rf "$dir/dst"
if [ "$keep" = 0 ]; then
	rm -rf "$dir/one" "$dir/mixed" "$dir/sparse"
fi
