#!/usr/bin/env bash
# mkcorpus.sh DIR [small|real|large|all] -- build benchmark corpora under DIR.
#
# Each corpus NAME is built once into DIR/NAME/src and marked done by the
# empty file DIR/NAME/.done (outside src, so it is never part of a copy).
# A corpus directory without .done (an interrupted build) is removed and
# built again.  Copy SRC = DIR/NAME/src.
#
#   small  100,000 files in 10 top dirs x 50 subdirs x 200 files (d00/s00/f000),
#          sizes lognormal(mu, sigma) bytes capped at 1 MiB, contents slices of
#          a 1 MiB pseudo-random blob.  Everything comes from one seeded
#          python3 random.Random (stdlib only), so the same seed gives the same
#          bytes on every machine.  Defaults mu=8.0 (median e^8 = 2981 B) and
#          sigma=1.5 (mean ~9 KB, ~0.9 GB in all); override with
#          PCOPY_BENCH_MU / PCOPY_BENCH_SIGMA / PCOPY_BENCH_SEED (a changed
#          value is a different corpus: delete the old one first).
#   real   cp -a of /usr/include and /usr/share (whichever exist).
#   large  4 files of 1 GiB each from /dev/urandom (not deterministic; its
#          contents do not matter to a copier).
#   all    the three above.
#
# Prints one line per corpus: files, bytes, and the seconds the build took.
set -euo pipefail

usage() { echo "usage: $0 DIR [small|real|large|all]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
base=$1
what=${2:-small}
case $what in small|real|large) list=$what ;; all) list="small real large" ;; *) usage ;; esac

SEED=${PCOPY_BENCH_SEED:-20240601}
MU=${PCOPY_BENCH_MU:-8.0}
SIGMA=${PCOPY_BENCH_SIGMA:-1.5}

mkdir -p "$base"

now() { echo "${EPOCHREALTIME/,/.}"; }

gen_small() {  # $1 = target directory (exists, empty)
	command -v python3 >/dev/null || { echo "mkcorpus: python3 is needed for the small corpus" >&2; exit 1; }
	python3 - "$1" "$SEED" "$MU" "$SIGMA" <<'EOF'
import os, random, sys
root, seed, mu, sigma = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
BLOB = 1 << 20                      # 1 MiB source blob; also the size cap
rng = random.Random(seed)
blob = memoryview(rng.getrandbits(8 * BLOB).to_bytes(BLOB, "little"))
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
total = 0
for d in range(10):
    for s in range(50):
        sub = os.path.join(root, "d%02d" % d, "s%02d" % s)
        os.makedirs(sub)
        for f in range(200):
            size = min(int(rng.lognormvariate(mu, sigma)), BLOB)
            off = rng.randrange(BLOB - size + 1)
            fd = os.open(os.path.join(sub, "f%03d" % f), flags, 0o644)
            view = blob[off:off + size]
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.close(fd)
            total += size
print(total)
EOF
}

gen_real() {
	local have=()
	for d in /usr/include /usr/share; do [ -d "$d" ] && have+=("$d"); done
	[ ${#have[@]} -gt 0 ] || { echo "mkcorpus: neither /usr/include nor /usr/share exists" >&2; exit 1; }
	cp -a "${have[@]}" "$1"/
}

gen_large() {
	local i
	for i in 0 1 2 3; do
		head -c 1G /dev/urandom >"$1/big$i"
	done
}

for name in $list; do
	dir=$base/$name
	if [ -e "$dir/.done" ]; then
		echo "mkcorpus: $dir already built" >&2
		continue
	fi
	rm -rf "$dir"
	mkdir -p "$dir/src"
	t0=$(now)
	"gen_$name" "$dir/src" >/dev/null
	sync -f "$dir/src" 2>/dev/null || sync
	t1=$(now)
	: >"$dir/.done"
	files=$(find "$dir/src" | wc -l)
	bytes=$(du -sb "$dir/src" | cut -f1)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	echo "mkcorpus: $dir/src: $files entries, $bytes bytes (du -sb), built in $secs s" >&2
done
