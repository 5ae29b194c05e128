#!/bin/bash
# usage: bench/shard-cost.sh SRC [N [ROUNDS]]
# CPU cost of sharding: user+sys seconds (pcopy and its workers) of one
# plain run of SRC, of N runs --shard 1/N .. N/N one after another into one
# DEST, and of the final 'pcopy -u'; median of ROUNDS (default 3) rounds,
# and the median of each round's own shards/full ratio (paired: a load
# that comes and goes on a shared machine moves both terms of a round).
# Copies go next to SRC (SRC.full, SRC.shard), removed after each round.
# PCOPY=/path/to/pcopy tests another binary (default ./pcopy).
set -euo pipefail
src=${1:?usage: shard-cost.sh SRC [N [ROUNDS]]}
n=${2:-4}
rounds=${3:-3}
P=${PCOPY:-./pcopy}
TIMEFORMAT='%3U %3S'
# cpu CMD...: run CMD, print its user+sys seconds (children included)
cpu() { { time "$@" >/dev/null; } 2>&1 | awk '{ printf "%.3f", $1 + $2 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
full=() shards=() finals=() ratios=()
for r in $(seq 1 "$rounds"); do
	rm -rf "$src.full" "$src.shard"
	full+=("$(cpu "$P" -q "$src" "$src.full")")
	s=0
	for k in $(seq 1 "$n"); do
		s=$(awk -v a="$s" -v b="$(cpu "$P" -q --shard "$k/$n" "$src" "$src.shard")" \
		    'BEGIN { printf "%.3f", a + b }')
	done
	shards+=("$s")
	finals+=("$(cpu "$P" -q -u "$src" "$src.shard")")
	ratios+=("$(awk -v f="${full[-1]}" -v s="$s" 'BEGIN { printf "%.3f", s / f }')")
	echo "round $r: full ${full[-1]} s, $n shards ${shards[-1]} s, final -u ${finals[-1]} s" >&2
done
rm -rf "$src.full" "$src.shard"
f=$(printf '%s\n' "${full[@]}" | median)
s=$(printf '%s\n' "${shards[@]}" | median)
u=$(printf '%s\n' "${finals[@]}" | median)
q=$(printf '%s\n' "${ratios[@]}" | median)
awk -v f="$f" -v s="$s" -v u="$u" -v n="$n" -v q="$q" 'BEGIN {
	printf "median CPU: full %.3f s; %d shards %.3f s (%.2fx); final -u %.3f s (shards + final %.2fx); median of the rounds\x27 ratios %.2fx\n",
	    f, n, s, s / f, u, (s + u) / f, q }'
