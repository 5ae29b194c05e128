#!/bin/sh
# test.sh - test suite for pcopy
# SPDX-License-Identifier: MIT
#
# Usage: ./test.sh [PATH-TO-PCOPY [CASE]...]
#
# Every case is a shell function named t_*.  The runner gives each case a
# fresh empty directory, runs it in a subshell with `set -e', and prints
# `ok NAME', `FAIL NAME' followed by the case's output, or `skip NAME
# (reason)' when the case exits 77 (an optional tool, root or a filesystem
# feature is missing).  The last line is `N passed, N failed' (`, N skipped'
# follows when something was skipped); the exit status is 0 iff nothing
# failed.  Name cases after the binary to run only those.
#
# Cases check the copy with same_tree, which compares two trees entry by
# entry: path, type, mode, owner, mtime to the nanosecond, size, content,
# symlink target, device numbers, hard-link grouping and xattrs.  Every
# pcopy run is wrapped in `timeout', so a hang is a failure, not a stall.
#
# Needs GNU findutils, coreutils, sed and diff.  Optional: getfattr/setfattr
# (attr), setfacl/getfacl (acl), setcap (libcap2-bin), script, setpriv,
# flock and unshare (util-linux), perl (sockets, signals at their defaults,
# rewriting a file under a copy), ps and pgrep (procps), strace, readelf or
# file.  Cases needing a missing tool, or root, are skipped.  Run as root to
# cover devices, owners, trusted.* and security.capability, full file
# systems and mount points.
#
# TEST_TIMES=1 adds each case's wall time in seconds to its line.
#
# PCOPY_WRAP, if set, is a command every pcopy run goes through, e.g.
# PCOPY_WRAP="valgrind -q --error-exitcode=99 --trace-children=yes" (see
# `make valgrind').  Timeouts are then ten times longer, and the cases that
# depend on the binary itself skip.  A line like valgrind's "==PID== ..."
# on pcopy's stderr counts as an error (exit status 99): pcopy does not
# pass on the exit status of its workers, so --error-exitcode alone misses
# their errors.  (Hence valgrind's -q.)  Under qemu-user
# (PCOPY_WRAP=qemu-arm-static and the like: `make test-cross') the binary
# itself runs, so only the cases that need something qemu lacks skip
# (no_qemu, naming it); strace then sees the emulator's host system calls.

LC_ALL=C
TZ=UTC
export LC_ALL TZ
umask 022
nl='
'
tab=$(printf '\t')

# find -execdir refuses to run with a relative directory in PATH.
PATH=$(printf '%s\n' "$PATH" | tr ':' '\n' | grep '^/' | paste -sd: -)
export PATH

SRCDIR=$(cd "$(dirname "$0")" && pwd)     # examples/ are read from here
PCOPY=${1:-./pcopy}
[ $# -gt 0 ] && shift
case $PCOPY in
/*) ;;
*) PCOPY=$(pwd)/$PCOPY ;;
esac
if [ ! -x "$PCOPY" ] || [ -d "$PCOPY" ]; then
	echo "test.sh: $PCOPY: not an executable file" >&2
	exit 2
fi
PCOPY_WRAP=${PCOPY_WRAP:-}
PCOPY_SANITIZED=${PCOPY_SANITIZED:-}  # set by 'make asan': sanitizer reports fail a case
tmul=1                  # timeouts are multiplied by this
qemu=                   # PCOPY_WRAP if it is qemu-user (a cross build under test)
qemu_bin=               # and the emulator's path
if [ -n "$PCOPY_WRAP" ]; then
	tmul=10
	# shellcheck disable=SC2086 # its first word
	pw_cmd=$(printf '%s\n' $PCOPY_WRAP | head -n 1)
	if ! command -v "$pw_cmd" >/dev/null 2>&1; then
		echo "test.sh: PCOPY_WRAP: '$pw_cmd' not found" >&2
		exit 2
	fi
	case ${pw_cmd##*/} in
	qemu-*) qemu=$PCOPY_WRAP qemu_bin=$(command -v "$pw_cmd") ;;
	esac
fi
for tool in find sed sort awk od cksum timeout stat cmp diff paste cut \
    truncate dd mkfifo split head tail; do
	command -v "$tool" >/dev/null 2>&1 && continue
	echo "test.sh: required tool '$tool' not found" >&2
	exit 2
done
if ! find / -maxdepth 0 -printf '' 2>/dev/null; then
	echo "test.sh: GNU find (with -printf) is required" >&2
	exit 2
fi

# All work happens in one temp dir; shared memory keeps the suite fast.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	base=/dev/shm
else
	base=${TMPDIR:-/tmp}
fi
T=$(mktemp -d "$base/pcopy-test.XXXXXX") || exit 2

cleanup()
{
	[ -n "$T" ] && [ -d "$T" ] || return 0
	chmod -R u+rwx "$T" 2>/dev/null  # cases leave 0000 and 0555 dirs
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# -- helpers --

fail()
{
	printf '%s\n' "$*"
	exit 1
}

# skip REASON: end the current case as skipped.
skip()
{
	printf '%s\n' "$*" >"$SKIPMSG"
	exit 77
}

have()
{
	command -v "$1" >/dev/null 2>&1
}

is_root()
{
	[ "$(id -u)" -eq 0 ]
}

# pc_cmd OUT ERR ARG...: run pcopy ARG... (through $PCOPY_WRAP) with a
# timeout, stdout to OUT, stderr to ERR; its exit status is pc_cmd's.
# PC_TIMEOUT overrides 60 s; PC_STDIN names a file for stdin (else none);
# $runas (see as_nobody) and PC_PREFIX (e.g. strace, env -i) are commands
# pcopy runs under.  Every pcopy run of a case goes through here, pc_bg,
# race_bg or the pty helpers.
pc_cmd()
{
	pcc_out=$1 pcc_err=$2
	shift 2
	# shellcheck disable=SC2086 # commands and their arguments
	timeout -k 5 $((${PC_TIMEOUT:-60} * tmul)) ${runas:-} ${PC_PREFIX:-} \
	    $PCOPY_WRAP "$PCOPY" "$@" <"${PC_STDIN:-/dev/null}" >"$pcc_out" \
	    2>"$pcc_err"
}

# pc_tty ARGS: run `pcopy ARGS' (ARGS: one string, quoted for sh -c) on a
# pseudo-terminal (script); what the terminal shows goes to tty.out, the
# exit status to $rc.  PC_TIMEOUT and PC_STDIN as for pc_cmd.
pc_tty()
{
	have script || skip "script (util-linux) missing"
	case $PCOPY in *"'"*) skip "pcopy path contains a quote" ;; esac
	rc=0
	timeout -k 5 $((${PC_TIMEOUT:-60} * tmul)) \
	    script -qec "$PCOPY_WRAP '$PCOPY' $1" /dev/null \
	    <"${PC_STDIN:-/dev/null}" >tty.out 2>&1 || rc=$?
	wrap_check tty.out
}

# pc ARG...: pc_cmd with stdout to pc.out (or PC_OUT), stderr to pc.err
# and the exit status in $rc; a run that timed out is said so.
pc()
{
	rc=0
	pc_cmd "${PC_OUT:-pc.out}" pc.err "$@" || rc=$?
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "pcopy $* hung: killed after $((${PC_TIMEOUT:-60} * tmul)) s"
	fi
	wrap_check pc.err
}

# wrap_check FILE: under PCOPY_WRAP or PCOPY_SANITIZED, if FILE (stderr) holds lines
# like valgrind's "==PID== ...", print them and set rc to 99.
wrap_check()
{
	[ -n "$PCOPY_WRAP$PCOPY_SANITIZED" ] || return 0
	grep -Eq '^==[0-9]+==|runtime error:' "$1" 2>/dev/null || return 0
	echo "PCOPY_WRAP or the sanitizer reported errors:"
	grep -E '^==[0-9]+==|runtime error:' "$1" | head -n 30
	rc=99
}

# no_wrap REASON: skip the case, saying why, if pcopy runs under PCOPY_WRAP.
no_wrap()
{
	[ -z "$PCOPY_WRAP" ] || skip "not under PCOPY_WRAP: $1"
	[ -z "$PCOPY_SANITIZED" ] || skip "not with a sanitizer build: $1"
}

# no_valgrind REASON: no_wrap, except under qemu-user, which runs the
# static binary itself at near native speed for system calls.  A case that
# runs "$PCOPY" itself (not through pc and the like) runs $qemu "$PCOPY":
# the emulator, or nothing when there is none.
no_valgrind()
{
	[ -n "$qemu" ] || no_wrap "$1"
}

# no_qemu REASON: skip the case under qemu-user, REASON saying what qemu
# lacks.
no_qemu()
{
	[ -z "$qemu" ] || skip "not under qemu-user: $1"
}

# at_exit COMMAND: run COMMAND (which must not fail) when the case ends,
# however it ends.
at_exit()
{
	exit_cmds="${exit_cmds:-}$1$nl"
	trap 'set +e; eval "$exit_cmds"' EXIT
}

# want_rc N [WHAT [FILE]]: fail unless pcopy's last exit status was N,
# showing the start of pc.err, or the end of FILE (e.g. a terminal's
# output).
want_rc()
{
	[ "$rc" -eq "$1" ] && return 0
	if [ -n "${3:-}" ]; then
		fail "${2:+$2: }exit $rc, want $1: $(tail -c 300 "$3" 2>/dev/null)"
	fi
	fail "${2:+$2: }exit $rc, want $1: $(head -n 8 pc.err 2>/dev/null)"
}

# pc_ok ARG...: run pcopy, which must exit 0.
pc_ok()
{
	pc "$@"
	[ "$rc" -eq 0 ] && return 0
	echo "pcopy $* exited $rc, stderr:"
	head -n 20 pc.err | sed 's/^/  /'
	return 1
}

# esc0: NUL-terminated items on stdin -> one item a line on stdout, with
# backslash, newline and tab escaped so any file name fits on one line.
esc0()
{
	sed -z 's/\\/\\\\/g; s/\n/\\n/g; s/\t/\\t/g' | tr '\0' '\n'
}

# manifest TREE OUT: write OUT, one sorted line per entry of TREE (TREE
# itself is "."), and OUT.raw (path, metadata, target) for the blocks
# check.  Normally files are summed and xattrs read in big batches by path
# relative to TREE; when TREE is a file or holds a path too long for
# open(2), they are read one directory at a time with -execdir and keyed
# by inode, which works at any depth but costs a few forks per directory.
manifest()
{
	m_dir=$1 m_out=$2
	case $m_dir in -*) m_dir=./$m_dir ;; esac
	if ! find "$m_dir" -printf '%P\0%y %m %U %G %T@ %s %i %b\0%l\0' \
	    >"$m_out.raw0" 2>"$m_out.err"; then
		echo "same_tree: find failed on $m_dir:"
		cat "$m_out.err"
		return 1
	fi
	esc0 <"$m_out.raw0" | paste - - - | sort >"$m_out.raw"
	m_fast=
	if [ -z "${ST_SLOW:-}" ] && [ -d "$m_dir" ] &&
	    awk -F "\t" "length(\$1) > 3000 { exit 1 }" "$m_out.raw"; then
		m_fast=1
	fi

	# Checksums (CRC and size: fast, and enough to catch a copying
	# error), as "p:PATH<tab>SUM" or "i:INODE<tab>SUM" lines.
	m_st=0
	if [ -n "$m_fast" ]; then
		(cd "$m_dir" && find . -type f -print0 |
		    xargs -0 -r cksum -z --) >"$m_out.sum0" 2>"$m_out.err" ||
		    m_st=$?
		esc0 <"$m_out.sum0" | awk 'match($0, /^[0-9]+ [0-9]+ \.\//) {
			s = substr($0, 1, RLENGTH - 3)
			sub(/ /, ":", s)
			print "p:" substr($0, RLENGTH + 1) "\t" s
		}' >"$m_out.sum"
	else
		find "$m_dir" -type f -execdir sh -c '
		    stat -c %i -- "$@" >"$0.i" && cksum -z -- "$@" >"$0.z" ||
			exit 1
		    cut -z -d " " -f 1,2 <"$0.z" | tr "\0 " "\n:" >"$0.m"
		    [ "$(wc -l <"$0.i")" -eq "$(wc -l <"$0.m")" ] || exit 1
		    paste "$0.i" "$0.m" | sed "s/^/i:/"' "$m_out.x" {} + \
		    >"$m_out.sum" 2>"$m_out.err" || m_st=$?
	fi
	if [ "$m_st" -ne 0 ] || [ -s "$m_out.err" ]; then
		echo "same_tree: cannot checksum the files of $m_dir:"
		head -n 10 "$m_out.err"
		return 1
	fi
	if ! find "$m_dir" \( -type b -o -type c \) \
	    -execdir stat -c '%i %t:%T' -- {} + >"$m_out.dev" 2>"$m_out.err"
	then
		echo "same_tree: cannot stat the devices of $m_dir:"
		cat "$m_out.err"
		return 1
	fi
	awk -F '\t' -v dirs="$m_out.dirs" '
	FILENAME == ARGV[1] { sum[$1] = $2; next }
	FILENAME == ARGV[2] { split($0, a, " "); dev[a[1]] = a[2]; next }
	{
		path = $1 == "" ? "." : $1
		split($2, m, " ")	# type mode uid gid mtime size ino blocks
		ino = m[7]
		line = path "\t" m[1] " " m[2] " " m[3]":"m[4] " " m[5]
		if (m[1] == "f") {
			s = ("p:" path) in sum ? sum["p:" path] : \
			    ("i:" ino) in sum ? sum["i:" ino] : "?"
			line = line " size=" m[6] " sum=" s
		}
		if (m[1] == "l")
			line = line " -> " $3
		if (m[1] == "b" || m[1] == "c")
			line = line " dev=" (ino in dev ? dev[ino] : "?")
		if (m[1] == "d")
			print ino "\t" path >dirs
		else if (ino in first)
			line = line " hardlink=" first[ino]
		else
			first[ino] = path
		print line
	}' "$m_out.sum" "$m_out.dev" "$m_out.raw" >"$m_out"
	# a comparison that silently left out xattrs would pass what it
	# cannot see: a missing tool is a skip
	have getfattr || skip "getfattr missing (attr): cannot compare xattrs"

	# xattrs: getfattr prints a "# file: NAME" line before each file's
	# attributes.  NAME is relative to TREE after "#REL"; after "#DIR
	# INODE" it is relative to that directory.
	{
		echo '#TOP'
		getfattr -h -d -m - -e hex --absolute-names -- "$m_dir"
		if [ -n "$m_fast" ]; then
			echo '#REL'
			(cd "$m_dir" && find . -mindepth 1 -print0 |
			    xargs -0 -r getfattr -h -d -m - -e hex --)
		else
			find "$m_dir" -mindepth 1 -execdir sh -c \
			    'stat -c "#DIR %i" . &&
			     getfattr -h -d -m - -e hex -- "$@"' sh {} +
		fi
	} >"$m_out.xa" 2>"$m_out.err" || :
	if [ -s "$m_out.err" ]; then
		echo "same_tree: getfattr failed on $m_dir:"
		head -n 10 "$m_out.err"
		return 1
	fi
	: >>"$m_out.dirs"
	awk -F '\t' '
	FILENAME == ARGV[1] { dpath[$1] = $2; next }
	$0 == "#TOP" { top = 1; next }
	$0 == "#REL" { top = 0; dir = "."; next }
	/^#DIR / {
		top = 0; d = substr($0, 6)
		dir = d in dpath ? dpath[d] : "?" d
		next
	}
	/^# file: / {
		n = substr($0, 9)
		if (top)
			key = "."
		else {
			sub(/^\.\//, "", n)
			key = dir == "." ? n : dir "/" n
		}
		next
	}
	$0 == "" { next }
	{ print key "\txattr " $0 }' "$m_out.dirs" "$m_out.xa" | sort >>"$m_out"
}

# same_tree [-b] SRC DST: succeed iff the trees agree entry by entry (the
# names of SRC and DST themselves aside), else print the differences.  With
# -b, also fail if a regular file in DST allocates much more than in SRC
# (more than 1 MiB + 1/16 beyond it): sparse files must stay sparse.
same_tree()
{
	st_blocks=0
	if [ "$1" = -b ]; then
		st_blocks=1
		shift
	fi
	st_w=$(mktemp -d "$T/same_tree.XXXXXX") || return 1
	manifest "$1" "$st_w/a" || return 1
	manifest "$2" "$st_w/b" || return 1
	if ! cmp -s "$st_w/a" "$st_w/b"; then
		echo "same_tree: '$1' and '$2' differ (< first, > second):"
		diff "$st_w/a" "$st_w/b" | grep '^[<>]' | head -n 40 | awk '
		length($0) > 300 {
			$0 = substr($0, 1, 80) " ... " substr($0, length($0) - 200)
		}
		{ print }'
		return 1
	fi
	if [ "$st_blocks" -eq 1 ] && ! awk -F '\t' '
	FILENAME == ARGV[1] { split($2, m, " "); b[$1] = m[8]; next }
	{
		split($2, m, " ")
		if (m[1] != "f" || m[8] <= b[$1] + 2048 + b[$1] / 16)
			next
		printf "same_tree: %s allocates %d KiB, the source %d KiB\n", \
		    $1, m[8] / 2, b[$1] / 2
		bad = 1
	}
	END { exit bad }' "$st_w/a.raw" "$st_w/b.raw"; then
		return 1
	fi
	rm -rf "$st_w"
}

# no_temp_files DIR: fail if pcopy left a temporary file under DIR.
no_temp_files()
{
	ntf=$(find "$1" -name '.pcopy-tmp*' -print 2>&1 | head -n 5)
	[ -z "$ntf" ] && return 0
	echo "temporary files left under $1:"
	printf '%s\n' "$ntf"
	return 1
}

# has_cr FILE: true if FILE holds a carriage return not ending a line.
has_cr()
{
	sed 's/\r$//' "$1" | grep -q "$(printf '\r')"
}

# mk_files DIR NDIRS NFILES: NDIRS subdirectories of NFILES small files each.
mk_files()
{
	mkdir -p "$1"
	mf_d=0
	while [ "$mf_d" -lt "$2" ]; do
		mkdir "$1/d$mf_d"
		mf_i=0
		while [ "$mf_i" -lt "$3" ]; do
			echo "dir $mf_d file $mf_i" >"$1/d$mf_d/f$mf_i"
			mf_i=$((mf_i + 1))
		done
		mf_d=$((mf_d + 1))
	done
}

# mk_big_tree DIR: a tree that takes a noticeable time to copy (4,000 small
# files and 256 MiB of data), for the progress and signal cases.
mk_big_tree()
{
	mk_files "$1" 40 100
	mkdir "$1/big"
	for n in 1 2 3 4; do
		head -c 67108864 /dev/zero >"$1/big/zero$n"
	done
}

# long_name N CHAR: a name of N copies of CHAR.
long_name()
{
	printf "%0${1}d" 0 | tr 0 "$2"
}

# mk_split DIR NDIRS NFILES SIZE: NDIRS directories d0... of NFILES random
# files of SIZE bytes each (split(1) makes thousands in a blink).
mk_split()
{
	mkdir -p "$1"
	ms_d=0
	while [ "$ms_d" -lt "$2" ]; do
		mkdir "$1/d$ms_d"
		head -c $(($3 * $4)) /dev/urandom |
		    split -b "$4" -a 4 - "$1/d$ms_d/f"
		ms_d=$((ms_d + 1))
	done
}

# mk_mid_tree DIR: a tree pcopy takes a few tenths of a second to copy
# (20,000 small files and 256 MiB), for signals that must land mid-copy.
mk_mid_tree()
{
	mk_split "$1" 20 1000 100
	mkdir "$1/big"
	for n in 1 2 3 4; do
		head -c 67108864 /dev/zero >"$1/big/zero$n"
	done
}

# dir_times_from SRC COPY: give every directory of COPY the mtime of its
# counterpart in SRC (after entries were removed from COPY).
dir_times_from()
{
	(cd "$2" && find . -type d -print0) | xargs -0 sh -c '
	src=$0 copy=$1
	shift
	for d; do
		touch -r "$src/$d" "$copy/$d" || exit 1
	done' "$1" "$2"
}

# files_match SRC DST: every regular file in DST is complete: content, size,
# mode and mtime are those of the file at the same path in SRC.
files_match()
{
	fm=$(pwd)/fm
	(cd "$2" && find . -type f -print0) >"$fm.list"
	[ -s "$fm.list" ] || return 0
	for fm_x in a b; do
		[ $fm_x = a ] && fm_t=$1 || fm_t=$2
		(cd "$fm_t" && xargs -0 stat -c '%n %s %a %.9Y' -- <"$fm.list" &&
		    xargs -0 cksum -- <"$fm.list") >"$fm.$fm_x" 2>&1 || :
	done
	if ! cmp -s "$fm.a" "$fm.b"; then
		echo "files in $2 that are not complete copies of those in $1:"
		diff "$fm.a" "$fm.b" | grep '^[<>]' | head -n 20
		return 1
	fi
	rm -f "$fm.list" "$fm.a" "$fm.b"
}

# -- processes --
#
# Cases that signal pcopy start it with pc_bg.  Its processes are found by
# an environment variable only they carry, so neither the wrappers around
# it (timeout, PCOPY_WRAP) nor other runs are mistaken for it.

# alive PID: PID has not ended.  A zombie has ended: orphans go to a PID 1
# that may be slow to reap them.
alive()
{
	al_s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $al_s in
	'' | Z*) return 1 ;;
	esac
	return 0
}

# pc_bg ARG...: start pcopy ARG... in the background with a timeout, stdout
# to pc.out, stderr to pc.err, SIGINT and SIGHUP at their defaults (as from
# an interactive shell: a script's background job has SIGINT ignored, and
# pcopy keeps it so).  Sets pid (pcopy's process), bg (the timeout around
# it: see pc_wait) and tag: the processes of this run, workers included,
# and no others, have PCOPY_TEST_TAG=$tag in their environment.  When the
# case ends, whatever is left of them is killed.  PC_PREFIX, if set, is a
# command to run pcopy with, one that ends in exec.  pcopy runs niced, so
# that on a busy machine the case sees what it is doing in time.
pc_bg()
{
	have perl || skip "perl missing: cannot reset SIGINT for pcopy"
	have ps && have pgrep || skip "ps or pgrep missing (procps)"
	bg_n=$((${bg_n:-0} + 1))
	tag=pcopy-test.$$.${PWD##*/}.$bg_n.
	at_exit "kill_tagged $tag"
	# shellcheck disable=SC2086 # PCOPY_WRAP is a command and its arguments
	timeout -k 5 $((${PC_TIMEOUT:-60} * tmul)) env "PCOPY_TEST_TAG=$tag" \
	    nice -n 10 perl -e '$SIG{INT} = $SIG{HUP} = "DEFAULT";
		exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n"' -- \
	    ${PC_PREFIX:-} $PCOPY_WRAP "$PCOPY" "$@" </dev/null >pc.out 2>pc.err &
	bg=$!
	pid=
	i=0
	while [ $i -lt 1000 ]; do
		pid=$(pgrep -P "$bg") || :
		[ -z "$pid" ] && alive "$bg" || break
		sleep 0.01
		i=$((i + 1))
	done
	if [ -z "$pid" ]; then
		pc_wait
		fail "pcopy $* did not start or ended at once (exit $rc):
$(head -n 5 pc.err)"
	fi
}

# pc_wait: wait for the pcopy of pc_bg to end; its exit status goes to $rc.
pc_wait()
{
	rc=0
	wait "$bg" || rc=$?
	[ "$rc" -ne 124 ] || echo "pcopy hung: killed by timeout"
	wrap_check pc.err
}

# worker_killed_ok PID: after worker PID of the pc_bg run was killed with
# SIGKILL, pcopy still ends with 0 and a copy equal to src, names the dead
# worker on stderr and leaves no process behind.
worker_killed_ok()
{
	pc_wait
	want_rc 0 "after a worker was killed"
	grep -Eq "^pcopy: worker [0-9]+ \\(pid $1\\) killed by signal 9\$" \
	    pc.err || fail "no 'worker N (pid $1) killed by signal 9' line:
$(head -n 5 pc.err)"
	same_tree src dst
	no_procs_left 2
}

# tagged TAG: one "PID ARGS" line per live process of the pc_bg run TAG.
tagged()
{
	grep -l -a -F -e "PCOPY_TEST_TAG=$1" /proc/[0-9]*/environ 2>/dev/null |
	while IFS=/ read -r _ _ tg_p _; do
		alive "$tg_p" || continue
		printf '%s %s\n' "$tg_p" \
		    "$(tr '\0' ' ' <"/proc/$tg_p/cmdline" 2>/dev/null)"
	done
	return 0
}

# kill_tagged TAG: SIGKILL what is left of the pc_bg run TAG.
kill_tagged()
{
	tagged "$1" | while read -r kt_p _; do
		kill -KILL "$kt_p" 2>/dev/null
	done
	return 0
}

# no_procs_left SECONDS: succeed once no process of the last pc_bg run is
# alive; fail if some still are after SECONDS (times tmul).
no_procs_left()
{
	npl_i=0
	while [ -n "$(tagged "$tag")" ]; do
		npl_i=$((npl_i + 1))
		if [ "$npl_i" -gt $(($1 * tmul * 20)) ]; then
			echo "pcopy processes alive $1 s after the end:"
			tagged "$tag"
			return 1
		fi
		sleep 0.05
	done
}

# wait_files DIR N: wait until DIR holds N regular files, or pcopy ended.
wait_files()
{
	wf_i=0
	while [ $wf_i -lt $((1000 * tmul)) ] && alive "$pid"; do
		wf_n=$(find "$1" -type f 2>/dev/null | head -n "$2" | wc -l)
		[ "$wf_n" -lt "$2" ] || return 0
		sleep 0.01
		wf_i=$((wf_i + 1))
	done
	return 0
}

# stop_mid_copy DEST TOTAL [N]: once pcopy has named N files (default 1) in
# DEST, stop it (SIGSTOP) and set mid to 1 if DEST then holds fewer than
# TOTAL files: a signal sent now lands mid-copy whatever pcopy's speed.
# Its workers go on with the jobs they have.  The caller signals it and
# sends SIGCONT.
stop_mid_copy()
{
	wait_files "$1" "${3:-1}"
	mid=0
	kill -STOP "$pid" 2>/dev/null || return 0
	at_exit "kill -CONT $pid 2>/dev/null"
	alive "$pid" || return 0
	[ "$(find "$1" -type f | wc -l)" -ge "$2" ] || mid=1
}

# has_open PID PREFIX: process PID has a file open whose path starts with
# PREFIX (an absolute, physical path).
has_open()
{
	[ -n "$(find "/proc/$1/fd" -lname "$2*" -print -quit 2>/dev/null)" ]
}

# stop_worker_on PREFIX: find a worker of the pc_bg run that has a file
# under PREFIX open, stop it (SIGSTOP) and print its pid; print nothing if
# none is found while pcopy runs.  The caller sends SIGCONT.
stop_worker_on()
{
	swo_i=0
	while [ $swo_i -lt $((2000 * tmul)) ] && alive "$pid"; do
		for swo_w in $(pgrep -P "$pid"); do
			has_open "$swo_w" "$1" || continue
			kill -STOP "$swo_w" 2>/dev/null || continue
			if has_open "$swo_w" "$1"; then
				echo "$swo_w"
				return 0
			fi
			kill -CONT "$swo_w" 2>/dev/null || :
		done
		swo_i=$((swo_i + 1))
	done
	return 0
}

# -- the harness checks itself --

# restore_dir_times COPY: give every directory of COPY the mtime of its
# counterpart in ./base, undoing what a mutation did to them.
restore_dir_times()
{
	find base -type d -print0 | xargs -0 sh -c '
	for d; do
		c=$0${d#base}
		[ -d "$c" ] && touch -r "$d" "$c"
	done
	exit 0' "$1"
}

# mutate DESCRIPTION COMMAND [keep]: copy ./base, run COMMAND in the copy,
# restore its directories' mtimes (unless "keep"), and check that same_tree
# notices the difference, both ways round, in its batch mode and in its
# directory-at-a-time mode (ST_SLOW, used for very long paths).
mutate()
{
	mu_n=$((mu_n + 1))
	cp -a base "m$mu_n"
	(cd "m$mu_n" && eval "$2") || fail "could not apply mutation: $1"
	[ "${3:-}" = keep ] || restore_dir_times "m$mu_n"
	for mu_slow in "" 1; do
		if ST_SLOW=$mu_slow same_tree base "m$mu_n" >m.log 2>&1 ||
		    ST_SLOW=$mu_slow same_tree "m$mu_n" base >m.log 2>&1; then
			echo "same_tree${mu_slow:+ (ST_SLOW)} missed: $1"
			missed=$((missed + 1))
		fi
	done
	rm -rf "m$mu_n"
}

t_compare_detects()
{
	# it checks the suite, not the binary: the same under every wrapper,
	# and the costliest case under qemu (about 140 s a port)
	[ -z "$PCOPY_WRAP$PCOPY_SANITIZED" ] ||
	    skip "runs no pcopy (the suite's check of same_tree): the plain run does it"
	mkdir -p base/d base/e
	printf 'hello world\n' >base/f
	echo g >base/g
	echo h >base/d/h
	ln -s f base/l
	echo same >base/h1
	ln base/h1 base/h2
	cp -p base/h1 base/h3
	odd=$(printf 'odd\nname\\x\t\377')
	echo odd >"base/$odd"
	echo nl >"base/$(printf 'nl\nx')"
	mkfifo base/p
	touch -d '2001-02-03 04:05:06.123456789' base/f base/g base/h1 base/h3
	touch -h -d '2002-02-03 04:05:06.5' base/l
	devs=0
	if is_root && mknod base/null c 1 3 2>/dev/null; then
		devs=1
	fi
	xa=0
	if have setfattr && have getfattr &&
	    setfattr -n user.k -v v1 base/g 2>/dev/null; then
		xa=1
	fi

	cp -a base same
	for ST_SLOW in "" 1; do
		same_tree base same && same_tree same base ||
		    fail "same_tree${ST_SLOW:+ (ST_SLOW)} rejects an identical copy"
	done
	ST_SLOW=

	mu_n=0 missed=0
	mutate "one content byte" \
	    'printf X | dd of=f bs=1 seek=3 conv=notrunc status=none &&
	     touch -r ../base/f f'
	mutate "size" 'truncate -s 5 f && touch -r ../base/f f'
	mutate "mode 0644 -> 0600" 'chmod 0600 g'
	mutate "set-uid bit" 'chmod 4644 g'
	mutate "sticky bit on a dir" 'chmod 1755 d'
	mutate "top dir mode" 'chmod 0700 .'
	mutate "mtime off by 1 ns" "touch -d '2001-02-03 04:05:06.123456788' f"
	mutate "dir mtime" "touch -d '2001-02-03 04:05:06' d" keep
	mutate "top dir mtime" "touch -d '2001-02-03 04:05:06' ." keep
	mutate "symlink mtime" "touch -h -d '2002-02-03 04:05:06.4' l"
	mutate "symlink target" 'rm l && ln -s g l && touch -h -r ../base/l l'
	mutate "hard link broken" 'rm h2 && cp -p h1 h2'
	mutate "hard link added" 'rm h3 && ln h1 h3'
	mutate "missing file" 'rm d/h'
	mutate "extra file" 'echo x >d/extra'
	mutate "missing empty dir" 'rmdir e'
	mutate "FIFO became a file" 'rm p && : >p && touch -r ../base/p p'
	mutate "odd name changed" \
	    'mv -- "$odd" "$(printf "odd\nname\\\\x\t\376")"'
	mutate "newline in a name became backslash-n" \
	    'mv -- "$(printf "nl\nx")" "nl\\nx"'
	if [ "$xa" -eq 1 ]; then
		mutate "xattr value" 'setfattr -n user.k -v v2 g'
		mutate "xattr missing" 'setfattr -x user.k g'
		mutate "xattr added to a dir" 'setfattr -n user.n -v 1 d'
	fi
	if is_root; then
		mutate "owner" 'chown 1 g'
		mutate "group of a symlink" 'chown -h :1 l'
	fi
	if [ "$devs" -eq 1 ]; then
		mutate "device number" \
		    'rm null && mknod null c 1 5 && touch -r ../base/null null'
	fi

	# -b: same content, but one file is a hole and the other is written.
	mkdir s1 s2
	truncate -s 8M s1/f
	head -c 8388608 /dev/zero >s2/f
	touch -r s1/f s2/f
	touch -r s1 s2
	same_tree s1 s2 || fail "same_tree without -b must ignore allocation"
	if [ "$(stat -c %b s1/f)" -eq 0 ]; then
		same_tree -b s2 s1 >/dev/null ||
		    fail "same_tree -b rejects a sparser copy"
		if same_tree -b s1 s2 >/dev/null; then
			echo "same_tree -b missed a filled-in hole"
			missed=$((missed + 1))
		fi
	fi
	[ "$missed" -eq 0 ]
}

# -- content --

t_binary_bytes()
{
	mkdir src
	i=0
	while [ $i -lt 256 ]; do
		printf "\\$(printf %03o $i)"
		i=$((i + 1))
	done >src/allbytes
	od -An -v -tu1 src/allbytes | tr -s ' ' '\n' | sed '/^$/d' >got
	seq 0 255 >want
	cmp -s got want || fail "could not build the 256-byte file"
	for i in 1 2 3 4 5 6 7 8 9 10 11 12; do   # 1 MiB of all bytes
		cat src/allbytes src/allbytes >src/x && mv src/x src/allbytes
	done
	head -c 3145745 /dev/urandom >src/random
	head -c 1048573 /dev/zero | tr '\0' '\377' >src/ff
	head -c 4099 /dev/zero >src/zeros
	pc_ok src dst
	same_tree src dst
	cmp src/random dst/random
}

t_sizes()
{
	mkdir src
	for n in 0 1 4095 4096 4097 65535 65536 65537 131071 131072 131073 \
	    1048575 1048576 1048577 5242883; do
		head -c $n /dev/urandom >src/s$n
	done
	pc_ok src dst
	same_tree src dst
	for n in 0 4097 131073 5242883; do
		[ "$(stat -c %s dst/s$n)" -eq $n ] || fail "dst/s$n has a wrong size"
	done
}

t_nested()
{
	mkdir src
	p=src i=1
	while [ $i -le 10 ]; do
		p=$p/d$i
		mkdir "$p" "$p/empty$i"
		echo "level $i" >"$p/f"
		i=$((i + 1))
	done
	mkdir -p src/e1/e2/e3 src/empty
	chmod 0700 src/d1/d2
	# dir mtimes are set after their contents exist: the copy must too.
	find src -depth -type d -exec touch -d '2010-01-01 00:00:00.5' {} +
	pc_ok src dst
	same_tree src dst
	[ -d dst/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/empty10 ] ||
	    fail "the deepest empty dir is missing"
}

t_many_small()
{
	mk_files src 50 100
	for j in 1 2 8; do
		pc_ok -j $j src dst$j
		same_tree src dst$j
	done
	same_tree dst1 dst2
	same_tree dst2 dst8
	[ "$(find dst8 -type f | wc -l)" -eq 5000 ] || fail "dst8: not 5000 files"
}

t_big_dir()
{
	mkdir src
	i=0
	while [ $i -lt 20000 ]; do
		echo $i >src/f$i
		i=$((i + 1))
	done
	pc_ok src dst
	same_tree src dst
	[ "$(find dst -type f | wc -l)" -eq 20000 ] || fail "dst: not 20000 files"
}

# -- names and paths --

t_odd_names()
{
	s="src with space"
	mkdir "$s"
	n255=$(long_name 255 x)
	for n in "a space" "tab${tab}name" "new${nl}line" "${nl}" 'back\slash' \
	    '\\' "-leading-dash" "--help" "-j" "$(printf '\377\376')" \
	    "$(printf 'caf\303\251')" "trailing " " leading" '*?[glob]' \
	    'a=b' '$HOME' "'quote\"" "$n255" "$(printf '\001\033[1m')"; do
		printf '%s\n' "$n" >"$s/$n"
	done
	d="$s/dir${nl}with${tab}odd \\ name$(printf '\377')"
	mkdir "$d"
	echo inner >"$d/-f"
	ln -s -- "-leading-dash" "$s/link${nl}odd"
	ln -s "$(printf 'target\nwith\377')" "$s/odd-target"
	[ "$(find "$s" -mindepth 1 | wc -l)" -ge 22 ] || fail "could not build"
	pc_ok "$s" "dst with space"
	same_tree "$s" "dst with space"
	cmp "$s/$n255" "dst with space/$n255"
}

t_long_path()
{
	n=$(long_name 200 d)
	top=$(pwd)
	mkdir src
	cd -P src
	i=0
	while [ $i -lt 26 ]; do        # 26 * 201 bytes: beyond PATH_MAX
		mkdir "$n"
		cd -P "$n"
		[ $i -eq 12 ] && echo middle >mid
		i=$((i + 1))
	done
	head -c 100000 /dev/urandom >bottom
	cd "$top"
	len=$(find src -printf '%P\n' | awk 'length($0) > m { m = length($0) }
	    END { print m }')
	[ "$len" -gt 5000 ] || fail "tree not deep enough ($len bytes)"
	pc_ok src dst
	same_tree src dst
	for t in src dst; do
		(
			cd -P $t
			i=0
			while [ $i -lt 26 ]; do
				cd -P "$n"
				i=$((i + 1))
			done
			cat bottom
		) >$t.bottom || fail "cannot walk down $t"
	done
	cmp src.bottom dst.bottom
	[ "$(wc -c <dst.bottom)" -eq 100000 ] || fail "bottom file truncated"
}

# -- symlinks, modes, owners, times --

t_symlinks()
{
	mkdir -p src/sub
	echo hi >src/file
	echo inner >src/sub/inner
	ln -s file src/rel
	ln -s ../file src/sub/up
	ln -s "$(pwd)/src/file" src/abs
	ln -s missing src/dangling
	ln -s /nonexistent/nowhere src/dangling_abs
	ln -s sub src/dirlink
	ln -s "$(pwd)/src/sub" src/dirlink_abs
	ln -s loop_b src/loop_a
	ln -s loop_a src/loop_b
	ln -s self src/self
	ln -s .. src/sub/parent
	ln -s "$(long_name 1000 y)" src/longtarget
	pc_ok src dst
	same_tree src dst
	for l in rel abs dangling dangling_abs dirlink dirlink_abs loop_a \
	    loop_b self sub/up sub/parent longtarget; do
		[ -L "dst/$l" ] || fail "dst/$l is not a symlink"
	done
	[ "$(readlink dst/abs)" = "$(pwd)/src/file" ] ||
	    fail "absolute target changed: $(readlink dst/abs)"
}

t_modes()
{
	mkdir src
	for m in 0400 0444 0600 0640 0644 0700 0755 0777 4755 2755 6755 1755 \
	    0604; do
		echo "mode $m" >src/f$m
		chmod $m src/f$m
	done
	mkdir src/sticky src/setgid src/ro src/d0700 src/d0711 src/d0777
	chmod 1777 src/sticky
	chmod 2755 src/setgid
	echo a >src/ro/f
	mkdir src/ro/sub
	chmod 0555 src/ro/sub src/ro
	chmod 0700 src/d0700
	chmod 0711 src/d0711
	chmod 0777 src/d0777
	if is_root; then        # root reads what nobody else could
		echo zero >src/f0000
		chmod 0000 src/f0000
		for m in 0060 0007 0070; do
			echo "mode $m" >src/f$m
			chmod $m src/f$m
		done
		mkdir src/locked src/locked_empty
		echo secret >src/locked/f
		chmod 0000 src/locked src/locked_empty
		# set-uid/gid survive only if the mode is set after chown
		echo owned >src/owned
		chown 1234:5678 src/owned
		echo suid >src/suid_owned
		chown 1234:5678 src/suid_owned
		chmod 6755 src/suid_owned
		mkdir src/owned_dir
		chown 4321:8765 src/owned_dir
		chmod 2775 src/owned_dir
		ln -s owned src/owned_link
		chown -h 1111:2222 src/owned_link
	fi
	# modes come from the source, never from the umask
	(umask 077 && pc_ok src dst)
	same_tree src dst
	[ "$(stat -c %a dst/f4755)" = 4755 ] || fail "dst/f4755 lost set-uid"
	[ "$(stat -c %a dst/sticky)" = 1777 ] || fail "dst/sticky lost its mode"
	if is_root; then
		[ "$(stat -c %a:%u:%g dst/suid_owned)" = 6755:1234:5678 ] ||
		    fail "dst/suid_owned: $(stat -c %a:%u:%g dst/suid_owned)"
	fi
}

t_mtimes()
{
	mkdir -p src/nsdir src/old/deeper src/future
	echo a >src/ns
	echo b >src/nsdir/pre1970
	echo c >src/old/deeper/f
	echo d >src/future/f
	echo e >src/y2038
	echo f >src/epoch
	ln -s ns src/link_ns
	ln -s missing src/link_old
	ln -s ns src/future/link_future
	touch -d '2001-02-03 04:05:06.123456789' src/ns
	touch -d '1969-07-20 20:17:40.000000001' src/nsdir/pre1970
	touch -d '1950-01-01 00:00:00.999999999' src/old/deeper/f
	touch -d '2100-01-01 00:00:00.5' src/future/f
	touch -d '2038-01-19 03:14:08.000000007' src/y2038
	touch -d '1970-01-01 00:00:00' src/epoch
	touch -h -d '1999-12-31 23:59:59.999999999' src/link_ns
	touch -h -d '1960-06-06 06:06:06.6' src/link_old
	touch -h -d '2222-02-22 22:22:22.222222222' src/future/link_future
	touch -d '1955-05-05 05:05:05.05' src/old/deeper
	touch -d '1965-01-01 00:00:00.000000123' src/old
	touch -d '2099-09-09 09:09:09.999' src/future
	touch -d '2011-11-11 11:11:11.111111111' src/nsdir
	touch -d '2005-05-05 05:05:05.555555555' src
	[ "$(stat -c %Y src/old)" -lt 0 ] ||
	    skip "filesystem keeps no times before 1970"
	pc_ok src dst
	same_tree src dst
	[ "$(stat -c %.9Y dst/ns)" = 981173106.123456789 ] ||
	    fail "dst/ns mtime $(stat -c %.9Y dst/ns)"
}

t_hardlinks()
{
	mkdir -p src/a src/b src/c
	head -c 70000 /dev/urandom >src/a/x
	ln src/a/x src/a/y
	ln src/a/x src/b/z                   # group 1: three names, two dirs
	echo two >src/b/p
	ln src/b/p src/c/q                   # group 2
	echo two >src/c/r                    # same content, own inode
	echo out >src/partial
	ln src/partial outside               # a link outside SOURCE
	for j in 1 8; do
		pc_ok -j $j src dst$j
		same_tree src dst$j
		i=$(stat -c %i dst$j/a/x)
		[ "$(stat -c %i dst$j/a/y)" = "$i" ] &&
		    [ "$(stat -c %i dst$j/b/z)" = "$i" ] || fail "-j $j: group 1 split"
		[ "$(stat -c %h dst$j/a/x)" -eq 3 ] || fail "-j $j: group 1 link count"
		[ "$(stat -c %i dst$j/b/p)" = "$(stat -c %i dst$j/c/q)" ] ||
		    fail "-j $j: group 2 split"
		[ "$(stat -c %i dst$j/b/p)" != "$i" ] || fail "-j $j: groups merged"
		[ "$(stat -c %h dst$j/partial)" -eq 1 ] || fail "-j $j: partial"
	done
}

# Hard links to things other than non-empty regular files.
t_hardlinks_special()
{
	mkdir -p src/d
	: >src/empty1
	ln src/empty1 src/d/empty2
	: >src/empty_alone
	ln -s target src/sym1
	ln src/sym1 src/d/sym2               # GNU ln links the symlink itself
	mkfifo src/fifo1
	ln src/fifo1 src/d/fifo2
	[ "$(stat -c %h src/d/sym2)" -eq 2 ] || skip "cannot hard-link a symlink here"
	for j in 1 8; do
		pc_ok -j $j src dst$j
		same_tree src dst$j
	done
}

# -- special files --

t_special_files()
{
	mkdir -p src/sub
	echo a >src/f
	mkfifo src/fifo src/sub/fifo2
	chmod 0640 src/fifo
	touch -d '2003-03-03 03:03:03.3' src/fifo
	devs=0
	if is_root && mknod src/null c 1 3 2>/dev/null; then
		devs=1
		mknod src/loop b 7 0
		chmod 0600 src/loop
		chown 12:34 src/null
		touch -d '2004-04-04 04:04:04.4' src/null
	fi
	PC_TIMEOUT=30 pc_ok src dst        # opening a FIFO would hang here
	same_tree src dst
	[ -p dst/fifo ] || fail "dst/fifo is not a FIFO"
	if [ "$devs" -eq 1 ]; then
		[ -c dst/null ] && [ "$(stat -c %t:%T dst/null)" = 1:3 ] ||
		    fail "dst/null is not char device 1,3"
	fi
}

# A socket is either skipped (with or without a message) or recreated; the
# rest of the tree must be copied either way.
t_socket()
{
	have perl || skip "perl missing: no way to make a socket"
	mkdir -p src/s src/other
	echo a >src/other/f
	perl -MSocket -e 'socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "$!";
	    bind($s, pack_sockaddr_un($ARGV[0])) or die "$!"' src/s/sock ||
	    skip "cannot create a socket"
	[ -S src/s/sock ] || skip "cannot create a socket"
	PC_TIMEOUT=30 pc src dst
	case $rc in
	0) ;;
	1) grep -q sock pc.err || fail "exit 1 without naming the socket" ;;
	*) fail "exit $rc" ;;
	esac
	[ ! -e dst/s/sock ] || [ -S dst/s/sock ] || fail "dst/s/sock is not a socket"
	same_tree src/other dst/other
}

# -- destination rules --

t_default_dest()
{
	mkdir -p work/tree/sub work/slash work/multi work/rel work/abs
	echo x >work/tree/sub/f
	echo y >work/slash/g
	echo z >work/multi/h
	echo w >work/rel/i
	echo v >work/abs/j
	echo note >work/notes.txt
	chmod 0640 work/notes.txt
	touch -d '2001-01-01 01:01:01.1' work/notes.txt work/tree
	pc_ok work/tree
	same_tree work/tree work/tree-copy
	pc_ok work/slash/
	same_tree work/slash work/slash-copy
	pc_ok work/multi//
	same_tree work/multi work/multi-copy
	pc_ok work/notes.txt
	[ -f work/notes.txt-copy ] || fail "work/notes.txt-copy is not a file"
	same_tree work/notes.txt work/notes.txt-copy
	(cd work && pc_ok rel)
	same_tree work/rel work/rel-copy
	pc_ok "$(pwd)/work/abs"
	same_tree work/abs work/abs-copy
	for x in tree-copy slash-copy notes.txt-copy work/slash/-copy \
	    work/slash/slash-copy; do
		[ ! -e "$x" ] || fail "unexpected $x"
	done
}

t_single_file()
{
	mkdir src
	head -c 200000 /dev/urandom >src/data
	chmod 0604 src/data
	touch -d '1999-09-09 09:09:09.090909090' src/data
	if have setfattr; then
		setfattr -n user.note -v hi src/data 2>/dev/null || :
	fi
	pc_ok src/data out
	same_tree src/data out
	echo "old content, longer than nothing" >existing
	pc_ok src/data existing
	same_tree src/data existing
}

t_merge()
{
	mkdir -p src/sub dst/sub
	echo new >src/same
	echo "new inner" >src/sub/same2
	echo added >src/added
	echo keep >dst/keep
	echo "old content that is longer than the new one" >dst/same
	chmod 0600 dst/same
	echo "old inner, longer" >dst/sub/same2
	echo keep2 >dst/sub/keep2
	pc_ok src dst
	[ "$(cat dst/keep)" = keep ] || fail "dst/keep changed or lost"
	[ "$(cat dst/sub/keep2)" = keep2 ] || fail "dst/sub/keep2 changed or lost"
	cmp src/same dst/same
	cmp src/sub/same2 dst/sub/same2
	# without the extra files (and with the mtimes their removal
	# changed put back) DEST must be exactly SOURCE
	rm dst/keep dst/sub/keep2
	touch -r src/sub dst/sub
	touch -r src dst
	same_tree src dst
}

# A same-name entry in DEST is replaced, never written through: a symlink
# in DEST must not redirect the copy to a file outside DEST.
t_merge_no_follow()
{
	mkdir -p src dst
	echo new >src/f
	echo victim >victim
	ln -s ../victim dst/f
	pc_ok src dst
	[ "$(cat victim)" = victim ] || fail "copy wrote through dst/f into victim"
	[ -f dst/f ] && [ ! -L dst/f ] || fail "dst/f is still a symlink"
	same_tree src dst
}

t_dest_inside()
{
	mkdir -p src/sub
	echo a >src/sub/f
	ln -s src alias
	cp -a src snap
	for d in src/sub/new src/new src src/ src/. ./src/../src \
	    src/sub/../new2 alias alias/new; do
		PC_TIMEOUT=20 pc src "$d"
		want_rc 2 "pcopy src $d"
		[ -s pc.err ] || fail "pcopy src $d: no message"
	done
	same_tree snap src      # nothing created, not even briefly
	# a sibling whose name merely starts with SOURCE's is not inside it
	pc_ok src src2
	same_tree src src2
	pc_ok src/sub src/sub2
	same_tree src/sub src/sub2
}

# usage_err WANT ARG...: pcopy ARG... must exit 2 with one line on stderr
# that starts with "pcopy" and contains WANT (an ERE, case-insensitive),
# print nothing on stdout and create no dstX.
usage_err()
{
	ue_want=$1
	shift
	PC_TIMEOUT=20 pc "$@"
	ue_bad=
	[ "$rc" -eq 2 ] || ue_bad="exit $rc, want 2"
	[ "$(wc -l <pc.err)" -eq 1 ] ||
	    ue_bad="$ue_bad; $(wc -l <pc.err) lines on stderr, want 1"
	head -n 1 pc.err | grep -q '^pcopy' ||
	    ue_bad="$ue_bad; stderr does not start with 'pcopy'"
	grep -Eqi -- "$ue_want" pc.err || ue_bad="$ue_bad; no /$ue_want/ on stderr"
	[ ! -s pc.out ] || ue_bad="$ue_bad; output on stdout"
	[ ! -e dstX ] || { ue_bad="$ue_bad; dstX created"; rm -rf dstX; }
	[ -z "$ue_bad" ] && return 0
	echo "pcopy $*: ${ue_bad#; }"
	sed 's/^/  stderr: /' pc.err | head -n 5
	bad=1
}

t_usage_errors()
{
	mkdir src
	echo a >src/f
	mkfifo fifo
	bad=0
	usage_err 'usage|source|operand|missing'
	usage_err nonexistent nonexistent dstX
	usage_err bogus --bogus src dstX
	usage_err "-y|'y'" -y src dstX
	for j in 0 -3 257 99999 abc 4x ''; do
		usage_err "job|-j|'j'" -j "$j" src dstX
		usage_err "job|-j|'j'" --jobs="$j" src dstX
	done
	usage_err "job|-j|'j'" src dstX -j
	usage_err extra src dstX extra
	usage_err fifo fifo dstX
	usage_err fifo fifo
	[ ! -e fifo-copy ] || fail "fifo-copy created"
	[ "$bad" -eq 0 ]
}

t_jobs_forms()
{
	mk_files src 4 20
	n=0
	for opt in --jobs=4 "--jobs 4" -j4 "-j 4" "-j 1" "-j 256" "-q -j 3"; do
		n=$((n + 1))
		pc_ok $opt src dst$n
		same_tree src dst$n
	done
}

# -- output --

t_help_version()
{
	for o in -h --help; do
		pc_ok $o
		grep -qi usage pc.out || fail "$o: no usage on stdout"
		grep -q -- --jobs pc.out || fail "$o: --jobs not described"
	done
	for o in -V --version; do
		pc_ok $o
		grep -q '[0-9]' pc.out || fail "$o: no version number on stdout"
	done
}

t_quiet()
{
	mk_files src 4 3
	pc_ok -q src dst
	[ ! -s pc.out ] || fail "-q: output on stdout: $(head -n 3 pc.out)"
	[ ! -s pc.err ] || fail "-q: output on stderr: $(head -n 3 pc.err)"
	same_tree src dst
	pc_ok --quiet src dst2
	[ ! -s pc.out ] && [ ! -s pc.err ] || fail "--quiet printed something"
	same_tree src dst2
}

t_summary()
{
	mk_files src 5 13         # 65 files, 5 dirs (6 with SOURCE)
	head -c 100000 /dev/urandom >src/d0/big
	pc_ok src dst
	same_tree src dst
	[ ! -s pc.out ] || fail "output on stdout: $(head -n 3 pc.out)"
	[ "$(wc -l <pc.err)" -eq 1 ] || fail "want one summary line, got:
$(cat pc.err)"
	grep -q '^pcopy: ' pc.err || fail "summary lacks 'pcopy: ': $(cat pc.err)"
	! has_cr pc.err || fail "carriage return on a stderr that is no terminal"
	! grep -q "$(printf '\033')" pc.err ||
	    fail "escape sequence on a stderr that is no terminal"
	grep -Eq '(^|[^0-9.])66([^0-9.]|$)' pc.err ||
	    fail "summary does not count 66 files: $(cat pc.err)"
	grep -qi file pc.err && grep -qi dir pc.err ||
	    fail "summary does not name files and dirs: $(cat pc.err)"
}

t_progress_tty()
{
	have script || skip "script (util-linux) missing"
	mk_big_tree src
	PC_TIMEOUT=120 pc_tty "src dst"
	want_rc 0 "pcopy on a terminal" tty.out
	same_tree src dst
	has_cr tty.out || fail "no carriage return on the terminal:
$(head -c 300 tty.out | od -c | head -n 10)"
	# one line per \r or \n, terminal escapes (like ESC[K) removed
	tr '\r' '\n' <tty.out | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >tty.lines
	grep -Eq '[0-9]+\.[0-9][0-9]%' tty.lines || fail "no NN.NN% figure:
$(head -n 5 tty.lines)"
	grep -Eq '[0-9]+/[0-9]+' tty.lines || fail "no N/M count:
$(head -n 5 tty.lines)"
	grep -q '^pcopy: ' tty.lines || fail "no summary line"
}

# No operands and a terminal on stdin: pcopy asks for the folder, then
# copies it to FOLDER-copy like the program it replaces.
t_prompt()
{
	mk_files src 3 10
	printf 'src\n' >answer
	PC_STDIN=answer pc_tty "-q"
	want_rc 0 "pcopy on a terminal" tty.out
	grep -q 'Folder to copy: ' tty.out || fail "no prompt: $(head -c 300 tty.out)"
	same_tree src src-copy
}

t_progress_flag()
{
	mk_big_tree src
	pc_ok --progress src dst
	same_tree src dst
	! has_cr pc.err || fail "--progress to a file wrote a carriage return"
	! grep -q "$(printf '\033')" pc.err ||
	    fail "--progress to a file wrote an escape sequence"
	grep -Eq '[0-9]+\.[0-9][0-9]%' pc.err || fail "no NN.NN% line:
$(head -n 5 pc.err)"
	[ "$(wc -l <pc.err)" -ge 2 ] || fail "want progress and summary lines"
	tail -n 1 pc.err | grep -q '^pcopy: ' || fail "last line is no summary"
}

t_verbose()
{
	mkdir -p src/sub/deep src/emptydir src/sub2
	echo a >src/a
	echo b >src/sub/b
	echo c >src/sub/deep/c
	ln -s a src/link
	printf '%s\n' a emptydir link sub sub/b sub/deep sub/deep/c sub2 >want
	for o in -v --verbose; do
		pc_ok $o src dst$o
		same_tree src dst$o
		# SOURCE itself may or may not get a line of its own
		grep -v -x -F -e . -e "" pc.out | sort >got
		cmp -s want got || fail "$o: stdout is not one line per entry:
$(diff want got)"
	done
}

t_static()
{
	no_valgrind "checks the binary itself"
	mkdir src
	echo a >src/f
	PC_PREFIX="env -i" pc --version
	want_rc 0 "env -i pcopy --version"
	[ -s pc.out ] || fail "env -i pcopy --version printed nothing"
	PC_PREFIX="env -i" pc -q src dst
	want_rc 0 "env -i pcopy src dst"
	same_tree src dst
	if have readelf; then
		readelf -l "$PCOPY" >ph 2>&1 || fail "not an ELF file: $(head -n 2 ph)"
		! grep -q INTERP ph || fail "has an INTERP header: dynamically linked"
	fi
	if have file; then
		file -L "$PCOPY" | grep -Eq 'statically linked|static-pie' ||
		    fail "file: $(file -L "$PCOPY")"
	fi
	have readelf || have file || skip "neither readelf nor file present"
}

# -- sparse files, xattrs, ACLs --

t_sparse()
{
	mkdir src
	truncate -s 5G src/hole
	[ "$(stat -c %b src/hole)" -le 8 ] || skip "filesystem does not keep holes"
	truncate -s 64M src/ext3
	for seek in 0 480 1008; do      # 1 MiB at 0, 30 MiB and 63 MiB
		dd if=/dev/urandom of=src/ext3 bs=64K count=16 seek=$seek \
		    conv=notrunc iflag=fullblock status=none
	done
	truncate -s 10M src/tailhole
	dd if=/dev/urandom of=src/tailhole bs=64K count=16 conv=notrunc \
	    iflag=fullblock status=none
	PC_TIMEOUT=100 pc_ok src dst
	same_tree -b src dst
	[ "$(stat -c %b dst/hole)" -le 64 ] ||
	    fail "dst/hole allocates $(stat -c %b dst/hole) blocks"
}

# A sparse file's holes are skipped, not read: copying 5 GiB that hold
# 1 MiB of data reads about 1 MiB (the system calls that move data, as
# strace counts their bytes), where reading the holes as zeros would
# read 5 GiB and still leave a sparse copy.
t_sparse_reads()
{
	no_valgrind "strace counts the system calls of the binary itself"
	have strace || skip "strace missing: bytes read not counted"
	strace -f -qq -o /dev/null -e trace=none true 2>/dev/null ||
	    skip "strace cannot trace here"
	mkdir src
	truncate -s 5G src/hole
	[ "$(stat -c %b src/hole)" -le 8 ] || skip "filesystem does not keep holes"
	dd if=/dev/urandom of=src/hole bs=64K count=16 seek=32768 \
	    conv=notrunc iflag=fullblock status=none      # 1 MiB at 2 GiB
	PC_TIMEOUT=100 PC_PREFIX="strace -f -qq -o st.out
	    -e trace=read,pread64,readv,preadv,copy_file_range,sendfile,splice" \
	    pc_ok -j 1 src dst
	same_tree -b src dst
	moved=$(awk '$NF ~ /^[0-9]+$/ && $(NF - 1) == "=" { s += $NF }
	    END { printf "%.0f\n", s }' st.out)
	[ "$moved" -ge 1048576 ] ||
	    skip "$moved bytes read: the copy shares its data (reflink)"
	[ "$moved" -le 16777216 ] ||
	    fail "read $moved bytes to copy a 5 GiB file holding 1 MiB"
}

# A file of more than 2 GiB copied with read/write arrives whole: tmpfs to
# a loop-mounted ext4, where copy_file_range refuses to cross file systems
# (strace confirms the fallback ran).  32-bit builds once kept the byte
# count of that copy in a 32-bit ssize_t, and the copy failed.  Only for
# 32-bit binaries (64-bit ones cannot truncate it); costs 2 GiB of RAM in
# the tmpfs and 2 GiB written to a sparse ext4 image in the case's dir.
t_fallback_2g()
{
	[ "$(od -An -tu1 -j4 -N1 "$PCOPY" | tr -d ' ')" = 1 ] ||
	    skip "a 64-bit binary: only 32-bit builds can truncate the count"
	is_root || skip "needs root to mount a tmpfs and an ext4 image"
	have mkfs.ext4 && have strace ||
	    skip "needs mkfs.ext4 (e2fsprogs) and strace"
	strace -o /dev/null true 2>/dev/null || skip "strace cannot trace here"
	need=2600
	[ "$(stat -f -c %T .)" != tmpfs ] || need=$((need + 2200))
	mem=$(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo)
	[ "${mem:-0}" -ge "$need" ] ||
	    skip "needs $need MiB of available memory, ${mem:-0} MiB free"
	here=$(pwd -P)
	mkdir src dst
	mount -t tmpfs -o size=2100m pcopy-test "$here/src" 2>/dev/null ||
	    skip "cannot mount a tmpfs"
	at_exit "umount '$here/src'"
	truncate -s 2300m img
	mkfs.ext4 -q -F -m 0 img >mkfs.out 2>&1 ||
	    fail "mkfs.ext4: $(head -n 3 mkfs.out)"
	mount -o loop img "$here/dst" 2>mount.err ||
	    skip "cannot mount an ext4 image: $(head -n 1 mount.err)"
	at_exit "umount '$here/dst'"       # the loop device is autocleared
	size=$((2048 * 1048576 + 70001))
	# a line of 6,001 bytes: no period that a misplaced 2^k block hides
	yes "$(head -c 3000 /dev/urandom | od -An -tx1 | tr -d ' \n')" |
	    head -c "$size" >src/big
	[ "$(stat -c %s src/big)" -eq "$size" ] || fail "src/big: short write"
	PC_TIMEOUT=300 PC_PREFIX="strace -f -o st.out -e trace=copy_file_range" \
	    pc -q src/big dst/big
	want_rc 0
	! grep -q 'copy_file_range(.*= [1-9]' st.out ||
	    skip "copy_file_range crossed file systems: the fallback did not run"
	grep -q 'copy_file_range(' st.out ||
	    fail "strace saw no copy_file_range: $(head -n 3 st.out)"
	[ "$(stat -c %s dst/big)" -eq "$size" ] ||
	    fail "dst/big: $(stat -c %s dst/big) bytes, want $size"
	cmp src/big dst/big || fail "dst/big differs from src/big"
}

t_xattrs()
{
	have setfattr && have getfattr || skip "setfattr/getfattr missing (attr)"
	mkdir -p src/d
	echo a >src/f
	echo b >src/d/g
	ln -s f src/l
	setfattr -n user.probe -v 1 src/f 2>/dev/null ||
	    skip "filesystem refuses user.* xattrs"
	setfattr -n user.text -v hello src/f
	setfattr -n user.bin -v 0x00ff00fe01 src/f
	setfattr -n user.empty src/f
	setfattr -n user.big -v "$(long_name 3000 v)" src/f
	setfattr -n user.dir -v dirval src/d
	setfattr -n user.top -v topval src
	i=0
	while [ $i -lt 20 ]; do
		setfattr -n user.many$i -v $i src/d/g
		i=$((i + 1))
	done
	touch -d '2002-02-02 02:02:02.2' src/f src/d
	pc_ok src dst
	same_tree src dst
	[ "$(getfattr --only-values -n user.text dst/f)" = hello ] ||
	    fail "dst/f lost user.text"
	[ "$(getfattr --only-values -n user.top dst)" = topval ] ||
	    fail "dst lost user.top"
}

t_xattrs_root()
{
	is_root || skip "needs root"
	have setfattr && have getfattr || skip "setfattr/getfattr missing (attr)"
	mkdir -p src/d
	echo a >src/f
	printf '#!/bin/sh\n' >src/cap
	chmod 0755 src/cap
	setfattr -n trusted.t -v tval src/f 2>/dev/null ||
	    skip "filesystem refuses trusted.* xattrs"
	setfattr -n trusted.d -v dval src/d
	# set last: chown and writing both clear security.capability
	if have setcap; then
		setcap cap_net_raw+ep src/cap
	else
		setfattr -n security.capability \
		    -v 0x0100000200200000000000000000000000000000 src/cap
	fi
	pc_ok src dst
	same_tree src dst
	getfattr -n security.capability dst/cap >/dev/null 2>&1 ||
	    fail "dst/cap lost security.capability"
}

t_acl()
{
	have setfacl && have getfacl || skip "setfacl/getfacl missing (acl)"
	mkdir -p src/d
	echo a >src/f
	echo b >src/g
	setfacl -m u:65534:r src/f 2>/dev/null || skip "filesystem refuses ACLs"
	setfacl -m g:65534:rw,m:rw src/g
	setfacl -m d:u:65534:rx src/d
	setfacl -m u:65534:rwx src/d
	pc_ok src dst
	same_tree src dst
	for x in f g d; do
		getfacl -cp "src/$x" >a 2>&1
		getfacl -cp "dst/$x" >b 2>&1
		cmp -s a b || fail "ACL of $x differs: $(diff a b)"
	done
}

# as_nobody: set runas to the command prefix that runs pcopy as uid 65534
# when we are root (empty otherwise), and open the case directory to it.
as_nobody()
{
	runas=
	is_root || return 0
	have setpriv || skip "setpriv missing: cannot drop root"
	setpriv --reuid=65534 --regid=65534 --clear-groups -- true ||
	    skip "setpriv cannot switch to uid 65534"
	runas="setpriv --reuid=65534 --regid=65534 --clear-groups --"
	chmod 0711 "$T"
	chmod 0777 .
}

# -- failures and signals --

# Entries that cannot be read are reported as `pcopy: 'PATH': reason', the
# rest is copied, and the exit status is 1.  Root runs pcopy as nobody.
t_partial_failure()
{
	as_nobody
	if ! $runas test -x "$PCOPY"; then
		skip "uid 65534 cannot run $PCOPY"
	fi
	mkdir -p src/sub src/locked
	echo ok1 >src/ok1
	echo ok2 >src/sub/ok2
	echo secret >src/secret
	echo hidden >src/locked/f
	chmod 0000 src/secret src/locked
	for q in "" -q; do
		# shellcheck disable=SC2086 # no option is an empty word
		pc $q src dst$q
		want_rc 1 "pcopy $q"
		grep -Eq "^pcopy: '[^']*secret': ." pc.err ||
		    fail "pcopy $q: src/secret not reported: $(cat pc.err)"
		grep -Eq "^pcopy: '[^']*locked[^']*': ." pc.err ||
		    fail "pcopy $q: src/locked not reported: $(cat pc.err)"
		cmp src/ok1 dst$q/ok1
		cmp src/sub/ok2 dst$q/sub/ok2
		chmod -R u+rwx dst$q    # dst/locked may be 0000, like src/locked
		no_temp_files dst$q
	done
}

# interrupt SIG STATUS: SIG while `pcopy src dst' is copying: exit STATUS
# with a summary, no process left, no temporary file left, every file in
# dst complete (a partial file never has a final name), and `pcopy -u'
# then completes the copy.
interrupt()
{
	mk_mid_tree src
	total=$(find src -type f | wc -l)
	pc_bg src dst
	stop_mid_copy dst "$total" 500
	if [ "${3:-}" = group ]; then
		# a terminal's ^C reaches every process of the foreground group
		# at once: the parent and all its workers
		kill -"$1" "$pid" $(pgrep -P "$pid") 2>/dev/null || :
	else
		kill -"$1" "$pid" 2>/dev/null || :
	fi
	kill -CONT "$pid" 2>/dev/null || :
	pc_wait
	if [ "$rc" -eq 0 ] && [ "$mid" -eq 0 ]; then
		same_tree src dst
		skip "the copy finished before SIG$1"
	fi
	[ "$rc" -eq "$2" ] ||
	    fail "exit $rc after SIG$1 mid-copy, want $2: $(head -n 5 pc.err)"
	grep -Eq '^pcopy: .*[0-9]+ files' pc.err ||
	    fail "no summary after SIG$1: $(head -n 5 pc.err)"
	no_procs_left 2
	no_temp_files dst
	files_match src dst
	pc_ok -q -u src dst
	same_tree src dst
}

t_signal()
{
	interrupt TERM 143
}

t_sigint()
{
	interrupt INT 130
}

t_sighup()
{
	interrupt HUP 129
}

# ^C in a terminal: SIGINT to the parent and every worker at once.
t_sigint_group()
{
	interrupt INT 130 group
}

# Reading the source does not change its access times (O_NOATIME), and
# the copy gets the source's atime.
t_source_atime()
{
	mkdir -p src/d
	head -c 10000 /dev/urandom >src/f
	touch -a -d '2002-02-02 02:02:02.25' src/f src/d src
	touch -m -d '2003-03-03 03:03:03.5' src/f src/d src
	before=$(stat -c %x src/f src/d src)
	pc_ok src dst
	[ "$(stat -c %x src/f src/d src)" = "$before" ] ||
	    fail "a source atime changed: $before -> $(stat -c %x src/f src/d src)"
	[ "$(stat -c %x dst/f)" = "$(stat -c %x src/f)" ] ||
	    fail "dst atime $(stat -c %x dst/f), want $(stat -c %x src/f)"
	# a user copying their files into a directory of someone else's (a
	# shared volume): O_NOATIME, refused on that DEST, is still asked
	# for on SOURCE, in the parent and in the workers it forks after
	is_root || return 0
	as_nobody
	$runas test -x "$PCOPY" || skip "uid 65534 cannot run $PCOPY"
	mkdir -p src2/d vol
	head -c 10000 /dev/urandom >src2/d/f
	touch -a -d '2002-02-02 02:02:02.25' src2/d/f src2/d
	touch -m -d '2003-03-03 03:03:03.5' src2/d/f src2/d
	chown -R 65534:65534 src2
	chmod 1777 vol
	before=$(stat -c %x src2/d/f src2/d)
	pc src2 vol
	want_rc 0 "as uid 65534 into a volume of root's"
	[ "$(stat -c %x src2/d/f src2/d)" = "$before" ] ||
	    fail "as uid 65534: a source atime changed: $before -> $(stat -c %x src2/d/f src2/d)"
}

# Files that vanish or change size between the walk and their copy are
# named and counted (exit 1); the grown file is copied as read.
t_vanish_grow()
{
	mkdir src
	head -c 268435456 /dev/zero >src/big
	echo three >src/small3
	echo four >src/small4
	printf 'big\nsmall3\nsmall4\n' >list
	pc_bg -j 1 --files-from list src dst
	w=$(stop_worker_on "$(pwd -P)/src/big")
	if [ -z "$w" ]; then
		pc_wait
		skip "never saw the worker copying src/big"
	fi
	rm src/small3
	echo "four, and more" >>src/small4
	kill -CONT "$w"
	pc_wait
	want_rc 1
	grep -q "^pcopy: 'src/small3': vanished before it could be copied\$" pc.err ||
	    fail "small3 not reported as vanished: $(head -n 5 pc.err)"
	grep -q "^pcopy: 'src/small4': changed size while being copied" pc.err ||
	    fail "small4 not reported as changed: $(head -n 5 pc.err)"
	[ ! -e dst/small3 ] || fail "dst/small3 exists"
	cmp src/small4 dst/small4 || fail "dst/small4 is not the file as read"
	cmp src/big dst/big || fail "dst/big differs"
}

# emlink_dir: what the EMLINK cases need (perl, root, an ext4 /var/tmp),
# and d, a directory there removed when the case ends.
emlink_dir()
{
	no_valgrind "65,000 links are slow under valgrind"
	have perl || skip "perl missing"
	is_root || skip "needs root to write in /var/tmp reliably"
	d=$(mktemp -d /var/tmp/pcopy-emlink.XXXXXX) || skip "cannot create a directory in /var/tmp"
	at_exit "rm -rf '$d'"
	[ "$(stat -f -c %T "$d")" = ext2/ext3 ] || skip "/var/tmp is not ext4"
}

# More names for one inode than DEST's file system allows (ext4: 65,000):
# the names beyond are copied as separate files with a warning, exit 0.
t_emlink()
{
	emlink_dir
	mkdir src
	echo data >src/f0
	perl -e 'for (1 .. 65009) { link("src/f0", "src/f$_") or die "link: $!\n" }' ||
	    skip "the source file system refuses 65,010 links"
	pc src "$d/dst"
	want_rc 0
	n=$(grep -c "too many links; copied as a separate file" pc.err)
	[ "$n" -ge 10 ] || fail "want >= 10 'too many links' warnings, got $n: $(head -n 5 pc.err)"
	[ "$(find "$d/dst" -type f | wc -l)" -eq 65010 ] || fail "not all 65,010 names copied"
	# which names are left over as copies depends on timing, not f0 or f65009
	nl=$(find "$d/dst" -type f -printf '%n\n' | sort -n | tail -n 1)
	[ "$nl" -ge 64000 ] || fail "the largest link group has $nl links"
	[ -z "$(find "$d/dst" -type f ! -size 5c)" ] || fail "a copy has the wrong size"
	cmp src/f0 "$d/dst/f65009" || fail "dst/f65009 differs"
}

# Stopped by SIGTERM, pcopy dies of SIGTERM (after its summary), as shells
# expect of an interrupted program: the waiting process sees the signal,
# not an exit status.
t_signal_status()
{
	no_valgrind "the signal must reach pcopy itself"
	have perl || skip "perl missing"
	mk_big_tree src
	# (qemu-user passes the signal on and dies of it itself)
	# shellcheck disable=SC2086 # PCOPY_WRAP (qemu) is a command
	perl -e '
		defined(my $p = fork) or die "fork: $!\n";
		if ($p == 0) {
			open STDERR, ">", "pc.err"; open STDIN, "<", "/dev/null";
			exec @ARGV or die "exec: $!\n";
		}
		# as soon as DEST exists the workers are copying: a fixed
		# delay let an idle machine finish first
		for (1 .. 5000) { last if -d "dst"; select undef, undef, undef, 0.001 }
		kill "TERM", $p;
		waitpid $p, 0;
		printf "%d %d\n", $? & 127, $? >> 8;' -- $PCOPY_WRAP "$PCOPY" src dst >st
	read -r sig code <st
	if [ "$sig" -eq 0 ] && [ "$code" -eq 0 ]; then
		skip "the copy finished before the signal"
	fi
	[ "$sig" -eq 15 ] || fail "want death by signal 15, got signal $sig, exit $code: $(tail -n 2 pc.err)"
	grep -q '^pcopy: interrupted: ' pc.err || fail "no summary: $(tail -n 2 pc.err)"
}

# The same, when the first copy is done before the walk meets the names
# that overflow (listed after 3,000 other files): EMLINK then comes on the
# parent's direct link, and the ledger must still balance (0.1 ended with
# "internal error: 68000 entries found, 68010 accounted for", exit 1).
t_emlink_done()
{
	emlink_dir
	mkdir -p src/a src/zz
	echo data >src/a/f0
	i=0
	while [ $i -lt 3000 ]; do
		echo $i >src/a/s$i
		i=$((i + 1))
	done
	perl -e 'for (1 .. 65009) { link("src/a/f0", "src/zz/f$_") or die "link: $!\n" }' ||
	    skip "the source file system refuses 65,010 links"
	printf 'a\nzz\n' >list
	pc --files-from list src "$d/dst"
	want_rc 0
	grep -q "too many links; copied as a separate file" pc.err ||
	    fail "no 'too many links' warning: $(head -n 5 pc.err)"
	grep -q "internal error" pc.err && fail "$(grep 'internal error' pc.err)"
	[ "$(find "$d/dst/zz" -type f | wc -l)" -eq 65009 ] || fail "not all 65,009 names copied"
	cmp src/a/f0 "$d/dst/zz/f65009" || fail "dst/zz/f65009 differs"
}

# SIGKILL to a worker mid-copy: the parent names it, replaces it, retries
# its jobs, and the copy completes.
t_worker_killed()
{
	mk_mid_tree src
	total=$(find src -type f | wc -l)
	pc_bg src dst
	stop_mid_copy dst "$total"
	if [ "$mid" -eq 0 ]; then
		kill -CONT "$pid" 2>/dev/null || :
		pc_wait
		same_tree src dst
		skip "the copy finished too soon"
	fi
	w=$(pgrep -P "$pid" | head -n 1)
	[ -n "$w" ] || fail "pcopy (pid $pid) has no worker"
	kill -KILL "$w"
	kill -CONT "$pid"
	worker_killed_ok "$w"
}

# SIGKILL to the parent mid-copy, once while its workers are busy and once
# while they wait for jobs: they end at once, and what they leave in dst
# is complete files under final names.
t_parent_killed()
{
	mk_mid_tree src
	total=$(find src -type f | wc -l)
	for how in busy idle; do
		pc_bg -q src dst-$how
		if [ $how = busy ]; then
			wait_files dst-$how 1
		else
			stop_mid_copy dst-$how "$total" 100
			sleep 0.2       # the workers finish their jobs
		fi
		kill -KILL "$pid" 2>/dev/null || :
		pc_wait
		if [ "$rc" -eq 0 ]; then
			same_tree src dst-$how
			skip "the copy finished before SIGKILL"
		fi
		want_rc 137 "SIGKILL"
		no_procs_left 2
		no_temp_files dst-$how
		files_match src dst-$how
	done
}

# enospc_case MOUNT-OPTIONS: copy a tree into a tmpfs too small for it:
# exit 1, one message (not one per file) naming DEST, no partial file.
enospc_case()
{
	is_root || skip "needs root to mount a tmpfs"
	mkdir mnt
	mnt=$(pwd -P)/mnt
	mount -t tmpfs -o "$1" pcopy-test "$mnt" 2>/dev/null ||
	    skip "cannot mount a tmpfs"
	at_exit "umount -l '$mnt' 2>/dev/null"
	pc -q src mnt/dst
	want_rc 1
	if [ "$(wc -l <pc.err)" -ne 1 ] ||
	    ! grep -q "^pcopy: 'mnt/dst': .*No space left on device" pc.err; then
		fail "want one ENOSPC line naming 'mnt/dst', got $(wc -l <pc.err):
$(head -n 5 pc.err)"
	fi
	no_temp_files mnt/dst
	files_match src mnt/dst
	# with few inodes the walk's directories may take them all first
	[ "${2:-}" = may-be-empty ] || [ -n "$(find mnt/dst -type f | head -n 1)" ] ||
	    fail "nothing was copied"
}

t_enospc()
{
	mk_split src/small 4 500 100    # 2,000 files, a 4 KiB page each
	mk_split src/large 2 10 262144  # 5 MiB
	mkdir src/links
	for n in 1 2 3 4 5 6 7 8; do    # long targets take a page too
		ln -s "$(long_name 300 t)$n" src/links/l$n
	done
	enospc_case size=4m
}

# The same with too few inodes: directories fail too.
t_enospc_inodes()
{
	mk_split src 100 3 100          # 100 dirs, 300 files
	enospc_case size=64m,nr_inodes=64 may-be-empty
}

# A symlink in DEST where SOURCE has a directory is an error, never a way
# out of DEST; a directory in DEST where SOURCE has a file is one too.
t_symlink_dest_dir()
{
	mkdir -p src/sub/deeper src/other outside dst/notdir/keep
	echo a >src/sub/f
	echo b >src/sub/deeper/g
	echo top >src/top
	echo o >src/other/x
	echo file >src/notdir
	echo k >dst/notdir/keep/k
	ln -s "$(pwd)/outside" dst/sub
	pc -q src dst
	want_rc 1
	grep -qx "pcopy: 'dst/sub': cannot overwrite non-directory with directory" \
	    pc.err || fail "dst/sub not reported: $(head -n 5 pc.err)"
	grep -qx \
	    "pcopy: 'dst/notdir': cannot overwrite directory with non-directory" \
	    pc.err || fail "dst/notdir not reported: $(head -n 5 pc.err)"
	[ "$(wc -l <pc.err)" -eq 2 ] || fail "want 2 lines on stderr:
$(head -n 5 pc.err)"
	[ -z "$(ls -A outside)" ] || fail "wrote through dst/sub: $(ls -A outside)"
	[ -L dst/sub ] && [ "$(readlink dst/sub)" = "$(pwd)/outside" ] ||
	    fail "dst/sub is no longer the symlink"
	[ "$(cat dst/notdir/keep/k)" = k ] || fail "dst/notdir/keep/k changed"
	cmp src/top dst/top
	same_tree src/other dst/other
}

# A directory of DEST swapped for a symlink while pcopy is copying into it:
# the writes stay in the real directory (held by descriptor), never go
# through the symlink.
t_symlink_swap()
{
	mkdir -p src/sub outside
	head -c 268435456 /dev/zero >src/sub/big
	for n in 1 2 3 4 5; do echo "$n" >src/sub/f$n; done
	pc_bg -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/sub/big")
	if [ -z "$w" ]; then
		pc_wait
		skip "never saw the worker copying src/sub/big"
	fi
	mv dst/sub dst/sub.real
	ln -s "$(pwd)/outside" dst/sub
	kill -CONT "$w"
	pc_wait
	want_rc 0
	[ -z "$(ls -A outside)" ] || fail "wrote through the swapped-in symlink: $(ls -A outside)"
	[ -L dst/sub ] || fail "dst/sub is no longer the symlink"
	same_tree src/sub dst/sub.real
}

# -- safety as root on trees that others can write --
#
# Race cases make a race certain, not probable: pcopy runs under strace,
# which holds one system call (delay_enter) while race_wait, watching
# /proc/PID/syscall, sees a pcopy process sitting in it; then the attacker,
# uid 65534 (setpriv), swaps names.  strace is used because the binary is
# static (no LD_PRELOAD).  The cases assert that nothing outside DEST
# changed and that no DEST file holds one file's data with another's
# metadata.  fs.protected_symlinks plays no part: no directory is sticky.

# race_setup: skip unless root, strace, setpriv and perl's syscall.ph are
# there; set runas (as_nobody) and nr_NAME for the system calls used.
race_setup()
{
	no_valgrind "strace traces the binary itself"
	is_root || skip "needs root: the victim is root's copy"
	have strace || skip "strace missing"
	have perl || skip "perl missing"
	as_nobody
	$runas test -x "$PCOPY" || skip "uid 65534 cannot reach $PCOPY"
	strace -f -qq -o /dev/null -e trace=none true 2>/dev/null ||
	    skip "strace cannot trace here"
	race_nrs=$(perl -e 'require "syscall.ph";
	    print join(" ", &SYS_openat, &SYS_fchownat, &SYS_fchown,
	    &SYS_renameat2), "\n"' 2>/dev/null) ||
	    skip "perl's syscall.ph missing"
	set -- $race_nrs
	nr_openat=$1 nr_fchownat=$2 nr_fchown=$3 nr_renameat2=$4
}

# race_bg SYSCALL ARG...: run pcopy ARG... in the background under strace,
# every SYSCALL held for 0.3 s before it runs.  Under qemu-user strace
# sees the emulator's host system calls: the guest's, translated (host
# numbers and flag values), and a few of qemu's own at start-up (some
# openat: held too, they only slow it down).
race_bg()
{
	rb_sys=$1
	shift
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	timeout -k 5 120 strace -f -qq -o /dev/null -e trace="$rb_sys" \
	    -e inject="$rb_sys":delay_enter=300000 $qemu "$PCOPY" "$@" \
	    </dev/null >pc.out 2>pc.err &
	bg=$!
	at_exit "kill $bg 2>/dev/null"
}

# race_end: wait for race_bg's pcopy; its exit status goes to $rc.
race_end()
{
	rc=0
	wait "$bg" || rc=$?
	[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "pcopy hung under strace"
}

# race_wait NR [FLAGS]: wait up to 30 s until a pcopy process sits in
# system call NR whose third argument (open flags) has all bits of FLAGS.
# A pcopy process is one whose /proc/PID/exe is the binary; under qemu-user
# it is the emulator, with the binary as its first argument.
race_wait()
{
	rw_exe=$PCOPY rw_arg=
	if [ -n "$qemu" ]; then
		rw_exe=$qemu_bin rw_arg=$PCOPY
	fi
	perl -e '
	my ($exe, $nr, $flags, $arg) = @ARGV;
	my @me = stat $exe or die "$exe: $!\n";
	for (1 .. 6000) {
		for my $p (glob "/proc/[0-9]*") {
			my @e = stat "$p/exe" or next;
			next unless $e[0] == $me[0] && $e[1] == $me[1];
			if ($arg ne "") {
				open my $c, "<", "$p/cmdline" or next;
				my @argv = split /\0/, (<$c> // "");
				next unless @argv > 1 && $argv[1] eq $arg;
			}
			open my $f, "<", "$p/syscall" or next;
			my @a = split " ", (<$f> // "");
			next unless @a > 4 && $a[0] eq $nr;
			next if $flags && (hex($a[3]) & $flags) != $flags;
			exit 0;
		}
		select undef, undef, undef, 0.005;
	}
	exit 1' "$rw_exe" "$1" "${2:-0}" "$rw_arg"
}

# exchange A B: as the attacker, swap two names atomically (renameat2
# RENAME_EXCHANGE).
exchange()
{
	$runas perl -e 'syscall($ARGV[0], -100, $ARGV[1], -100, $ARGV[2], 2) == 0 or
	    die "renameat2: $!\n"' "$nr_renameat2" "$1" "$2"
}

# snap FILE...: mode, owner, size and sum of each FILE, for before/after.
snap()
{
	stat -c '%n %A %u:%g %s' "$@"
	cksum "$@"
}

# no_mix TREE: every file holding root's secret is root's 0600, every one
# holding the user's data is 65534's 0644 (data and metadata from one file).
no_mix()
{
	find "$1" -type f | while read -r nm_f; do
		nm_m=$(stat -c '%a %u:%g' "$nm_f")
		case $(cat "$nm_f") in
		"ROOT SECRET") [ "$nm_m" = "600 0:0" ] ||
		    fail "$nm_f holds root's secret with $nm_m" ;;
		"user data") [ "$nm_m" = "644 65534:65534" ] ||
		    fail "$nm_f holds the user's data with $nm_m" ;;
		esac
	done
}

# The same attacks without strace, as they would really be tried: while
# uid 65534 keeps swapping its source files with root's secret and the
# new FIFO in its DEST directory with a symlink to a victim, a few hundred
# small runs (at most 20 s).  Probabilistic: it shows the windows are not
# merely narrow.
t_race_stress()
{
	no_valgrind "hundreds of runs"
	is_root || skip "needs root: the victim is root's copy"
	have perl || skip "perl missing"
	as_nobody
	$runas test -x "$PCOPY" || skip "uid 65534 cannot reach $PCOPY"
	nr=$(perl -e 'require "syscall.ph"; print &SYS_renameat2' 2>/dev/null) ||
	    skip "perl's syscall.ph missing"
	mkdir -p src/alice
	echo "ROOT SECRET" >src/alice/secret
	chmod 0600 src/alice/secret
	echo "user data" >src/alice/mine
	mkfifo src/alice/p
	chown 1234:1234 src/alice/p
	chmod 4755 src/alice/p
	chown 65534:65534 src/alice src/alice/mine
	echo victim >victim
	chmod 0600 victim
	snap victim >before
	: >go
	$runas perl -e 'my ($nr, $victim) = @ARGV;
	    my ($a, $b) = ("src/alice/secret", "src/alice/mine");
	    while (-e "go") {
		syscall($nr, -100, $a, -100, $b, 2);
		next unless -p "dst/alice/p";
		symlink $victim, "dst/alice/p.x" and rename "dst/alice/p.x", "dst/alice/p";
	    }' "$nr" "$(pwd)/victim" &
	atk=$!
	at_exit "rm -f '$(pwd)/go'; wait $atk"
	n=0 t0=$(date +%s)
	while [ $n -lt 300 ] && [ $(($(date +%s) - t0)) -lt 20 ]; do
		rm -rf dst 2>/dev/null || rm -rf dst
		mkdir -p dst/alice
		chown 65534:65534 dst/alice
		pc -j 2 src dst
		[ "$rc" -le 1 ] || fail "run $n: exit $rc: $(head -n 5 pc.err)"
		no_mix dst
		snap victim >after
		cmp -s before after || fail "run $n: the victim changed: $(cat after)"
		n=$((n + 1))
	done
	rm go
	echo "$n runs"
}

# Item 1 of issue 15: a node with a set-uid bit gets its mode after its
# owner; a user who can write the merged DEST directory swaps the new node
# for a symlink in between.  Root must not chmod what the symlink names.
t_race_node_chmod()
{
	race_setup
	mkdir -p src/d dst/d
	mkfifo src/d/p
	chown 1234:1234 src/d/p
	chmod 4755 src/d/p
	chown 65534:65534 dst/d
	echo victim >victim
	chmod 0600 victim
	snap victim >before
	race_bg fchownat -j 1 src dst
	race_wait "$nr_fchownat" || fail "pcopy never sat in fchownat: $(cat pc.err)"
	$runas perl -e 'symlink $ARGV[0], "$ARGV[1].x" or die "symlink: $!\n";
	    rename "$ARGV[1].x", $ARGV[1] or die "rename: $!\n"' \
	    "$(pwd)/victim" dst/d/p
	race_end
	snap victim >after
	cmp -s before after || fail "the victim changed: $(cat before after)"
}

# A default ACL that the owner of a merged DEST directory adds while pcopy
# copies into it (after pcopy looked at the directory, before the worker
# creates the file) gives root's new file no ACL entry: in a directory
# that is not pcopy's, every entry loses the ACLs SOURCE lacks.
t_race_default_acl()
{
	race_setup
	have setfacl && have getfacl || skip "setfacl/getfacl missing (acl)"
	mkdir -p src/d dst/d
	echo secret >src/d/secret
	chmod 0640 src/d/secret
	chown 65534:65534 dst/d
	race_bg openat -j 1 src dst
	# the worker's openat(O_TMPFILE): __O_TMPFILE is 0x400000
	race_wait "$nr_openat" 4194304 ||
	    fail "pcopy never sat in openat(O_TMPFILE): $(cat pc.err)"
	$runas setfacl -d -m u:65534:rw,m::rwx dst/d ||
	    fail "setfacl as the directory's owner failed"
	race_end
	want_rc 0
	if getfacl -cp dst/d/secret | grep -q '^user:65534'; then
		fail "dst/d/secret got the owner's ACL entry: $(getfacl -cp dst/d/secret)"
	fi
	if $runas cat dst/d/secret >/dev/null 2>&1; then
		fail "uid 65534 can read root's 0640 copy"
	fi
	[ "$(stat -c %a dst/d/secret)" = 640 ] || fail "mode $(stat -c %a dst/d/secret)"
}

# A device node is made with no permissions, and gets its mode only after
# its owner: in a set-gid DEST directory of another user's group, a 0660
# block device must not exist as root:<their group> rw-rw---- for a
# moment (they would open it and keep the descriptor).
t_race_node_perm()
{
	race_setup
	mkdir -p src/d dst/d
	mknod src/d/blk b 7 200
	chmod 0660 src/d/blk
	chown 0:6 src/d/blk
	chown 65534:65534 dst/d
	chmod 2777 dst/d
	race_bg fchownat -j 1 src dst
	race_wait "$nr_fchownat" || fail "pcopy never sat in fchownat: $(cat pc.err)"
	m=$(stat -c '%a %g' dst/d/blk 2>/dev/null) || m=none
	race_end
	want_rc 0
	case $m in
	"0 "*) ;;
	none) skip "the node was not there while pcopy sat in fchownat" ;;
	*) fail "before its owner was set, dst/d/blk was mode/group $m" ;;
	esac
	[ "$(stat -c '%a %u:%g' dst/d/blk)" = "660 0:6" ] ||
	    fail "dst/d/blk ended $(stat -c '%a %u:%g' dst/d/blk)"
}

# Item 3: between the walk's fstatat and the worker's open, the owner of a
# source directory swaps root's secret with their own file.  Neither may
# be copied with the other's owner and mode: both are named, exit 1.
t_race_swap_source()
{
	race_setup
	mkdir -p src/alice
	echo "ROOT SECRET" >src/alice/secret
	chmod 0600 src/alice/secret
	echo "user data" >src/alice/mine
	chown 65534:65534 src/alice src/alice/mine
	# --progress: the walk stats each file (walk_nostat), and the swap
	# falls between that fstatat and the worker's open
	race_bg openat --progress -j 1 src dst
	# the worker's open of a source file: O_NOFOLLOW | O_NONBLOCK
	race_wait "$nr_openat" $((0x20800)) || fail "never saw a source open"
	exchange src/alice/secret src/alice/mine
	race_end
	no_mix dst
	want_rc 1
	# the entry being opened when the names were swapped is named; the
	# other too, unless it was opened before (on a busy machine the
	# swap may come after the first open): then it keeps its own name
	named=0
	for f in secret mine; do
		if grep -qx "pcopy: 'src/alice/$f': changed during copy (another file took its name); not copied" \
		    pc.err; then
			named=$((named + 1))
			[ ! -e "dst/alice/$f" ] || fail "dst/alice/$f exists, yet was named"
		else
			case $f in secret) want="ROOT SECRET" ;; *) want="user data" ;; esac
			[ "$(cat "dst/alice/$f" 2>/dev/null)" = "$want" ] ||
			    fail "src/alice/$f neither named nor copied: $(head -n 5 pc.err)"
		fi
	done
	[ "$named" -ge 1 ] || fail "no entry named as changed: $(head -n 5 pc.err)"
	# without -u the walk queues files unstat'ed (walk_nostat): the
	# worker's check finds each name holding another inode than readdir
	# said and sends it back; the parent stats it as it is now and it is
	# copied with that file's own metadata
	race_bg openat -j 1 src dst2
	race_wait "$nr_openat" $((0x20800)) || fail "never saw a source open (2)"
	exchange src/alice/secret src/alice/mine
	race_end
	no_mix dst2
	want_rc 0 "unstat'ed walk"
	# each name copied whole, with the metadata of the file it held when
	# opened (no_mix), whether the swap came before or after that open
	[ -f dst2/alice/secret ] && [ -f dst2/alice/mine ] ||
	    fail "unstat'ed walk: a name is missing: $(ls dst2/alice)"
	# -c opens an unstat'ed file before any stat: a symlink that took its
	# name (O_NOFOLLOW: ELOOP) is sent back, looked at again by the
	# parent and named as changed; never followed, never copied
	race_bg openat -c -j 1 src dst3
	race_wait "$nr_openat" $((0x20800)) || fail "never saw a source open (3)"
	$runas sh -c 'rm -f src/alice/mine && ln -s /etc/shadow src/alice/mine'
	race_end
	want_rc 1 "-c, a symlink swapped in"
	grep -qx "pcopy: 'src/alice/mine': changed during copy (another file took its name); not copied" \
	    pc.err || fail "-c: the symlink swapped in not named as a change: $(head -n 5 pc.err)"
	[ ! -e dst3/alice/mine ] && [ ! -L dst3/alice/mine ] ||
	    fail "-c: dst3/alice/mine exists: $(ls -l dst3/alice)"
}

# --shard without a stat in the walk (walk_nostat): a name whose file is
# swapped, after readdir, for one that belongs to another shard (by its
# inode) is not copied by this shard too; it is named, as a swap after the
# walk's stat is.  Each file is one shard's.
t_race_shard_restat()
{
	race_setup
	mkdir -p src/d spare
	for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19; do
		echo "orig $i" >src/d/f$i
		echo "spare $i" >spare/s$i
	done
	chown -R 65534:65534 src spare
	pc -n --shard 1/2 src x
	x=$(sed -n 's|^create d/\(f[0-9]*\)$|\1|p' pc.out | head -n 1)
	pc -n --shard 2/2 spare y
	y=$(sed -n 's|^create \(s[0-9]*\)$|\1|p' pc.out | head -n 1)
	[ -n "$x" ] && [ -n "$y" ] || fail "no file in shard 1 of src or 2 of spare"
	race_bg openat -j 1 --shard 1/2 src dst1
	race_wait "$nr_openat" $((0x20800)) || fail "never saw a source open"
	$runas mv "spare/$y" "src/d/$x"
	race_end
	cp pc.err shard1.err
	pc -j 1 --shard 2/2 src dst2
	want_rc 0 "shard 2"
	[ "$(cat "dst2/d/$x")" = "spare ${y#s}" ] || fail "shard 2 did not copy d/$x"
	if [ "$(cat "dst1/d/$x" 2>/dev/null)" = "orig ${x#f}" ]; then
		skip "the swap came after shard 1 opened d/$x (a busy machine)"
	fi
	[ ! -e "dst1/d/$x" ] ||
	    fail "d/$x, now a file of shard 2, was copied by shard 1 too: $(cat "dst1/d/$x")"
	grep -qx "pcopy: 'src/d/$x': changed during copy (another file took its name); not copied" \
	    shard1.err || fail "shard 1 did not name d/$x: $(head -n 5 shard1.err)"
}

# Item 5: in fallback mode (hidden names), a hidden file is not created
# with its final mode: in a set-gid DEST of group 65534 a member of that
# group could open root's 0640 file while it is written, and keep reading.
t_race_hidden_mode()
{
	race_setup
	mkdir src dst
	echo "ROOT SECRET" >src/secret
	chmod 0640 src/secret
	chgrp 65534 dst
	chmod 2775 dst
	PCOPY_NO_TMPFILE=1
	export PCOPY_NO_TMPFILE
	race_bg fchown -j 1 src dst
	race_wait "$nr_fchown" || fail "never saw fchown: $(cat pc.err)"
	if $runas perl -e 'for (glob "dst/.pcopy-tmp.*") {
	    open my $f, "<", $_ and exit 0 } exit 1'; then
		race_end
		fail "uid 65534 opened root's hidden file"
	fi
	race_end
	want_rc 0
	chmod 0755 dst
	chgrp 0 dst
	same_tree src dst
}

# Item 4 (and issue 9 item 5): in a set-gid DEST, new subdirectories and
# their files get SOURCE's group even when it is pcopy's own (no chown is
# skipped as "already right": the file system gave them DEST's group).
t_setgid_dest()
{
	is_root || skip "needs root: chgrp to another group"
	mkdir -p src/sub/deeper dst
	echo a >src/f
	echo b >src/sub/g
	echo c >src/sub/deeper/h
	chmod 0640 src/sub/g
	chgrp 65534 dst
	chmod 2755 dst
	pc_ok src dst
	same_tree src dst
}

# Issue 9 item 5 on a `grpid' mount (ext4 on a loop device): new files and
# directories get their parent's group there, so no chown may be skipped
# as "already right" even when SOURCE's group is pcopy's own.
t_grpid_dest()
{
	is_root || skip "needs root to mount"
	have mkfs.ext4 || skip "mkfs.ext4 missing (e2fsprogs)"
	[ -e /dev/loop-control ] || skip "no /dev/loop-control"
	truncate -s 16M img
	mkfs.ext4 -q -F img >/dev/null 2>&1 || skip "mkfs.ext4 failed"
	mkdir mnt
	mount -o loop,grpid img mnt 2>/dev/null || skip "cannot mount ext4 -o loop,grpid"
	at_exit "umount '$(pwd)/mnt' 2>/dev/null || umount -l '$(pwd)/mnt'"
	chgrp 65534 mnt
	mkdir -p src/sub
	echo a >src/f
	echo b >src/sub/g
	pc_ok src mnt/dst
	same_tree src mnt/dst
}

# Item 2: a DEST that is a symlink is not followed (cp -aT refuses too):
# whoever planted it would get root's copy written where it points.
t_dest_symlink()
{
	mkdir src outside
	echo a >src/f
	ln -s outside dst
	for d in dst dst/; do
		pc src "$d"
		want_rc 2 "pcopy src $d"
		grep -qx "pcopy: '$d': is a symbolic link; not followed (name the directory it points to)" \
		    pc.err || fail "no message for $d: $(cat pc.err)"
		[ -z "$(ls -A outside)" ] || fail "wrote through $d: $(ls -A outside)"
	done
	pc_ok src outside
	same_tree src outside
}

# Item 6 of issue 15: a DEST name too long for any job is refused before
# anything starts (exit 2) -- it used to kill every worker, for ever.
t_over_long_name()
{
	mkdir src
	echo a >src/f
	long=$(head -c 40000 /dev/zero | tr '\0' x)
	PC_TIMEOUT=20 pc src/f "$long"
	want_rc 2
	grep -Eq "(File name|Filename) too long$" pc.err || fail "no ENAMETOOLONG: $(head -c 300 pc.err)"
}

# Item 6: workers that die before they take any job (strace kills each at
# its first prctl) count towards a limit: the run stops, names what it
# could not copy and exits 1 -- never a respawn loop.
t_respawn_limit()
{
	no_valgrind "strace traces the binary itself"
	have strace || skip "strace missing"
	strace -f -qq -o /dev/null -e trace=none true 2>/dev/null ||
	    skip "strace cannot trace here"
	mkdir src
	echo a >src/f
	echo b >src/g
	# (under qemu-user, strace sees the emulator make the worker's prctl
	# on the host; qemu makes none of its own, nor any flock below)
	PC_TIMEOUT=30 PC_PREFIX="strace -f -qq -o /dev/null -e trace=prctl
	    -e inject=prctl:signal=SIGKILL" pc -j 2 src dst
	[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "a respawn loop: killed after 30 s"
	want_rc 1
	grep -q "^pcopy: 'src/f': a worker died 3 times before it could start on it; giving up\$" \
	    pc.err || grep -q "^pcopy: 'workers': [0-9]* died in a row without finishing a job; stopping\$" \
	    pc.err || fail "no reason given: $(tail -n 3 pc.err)"
}

# Item 7: hidden names are locked; where locking fails for another reason
# than contention (ENOLCK: NFS without lockd), files are still copied --
# it used to retry for ever (a new hidden file each time, then a crash).
t_flock_enolck()
{
	no_valgrind "strace traces the binary itself"
	have strace || skip "strace missing"
	strace -f -qq -o /dev/null -e trace=none true 2>/dev/null ||
	    skip "strace cannot trace here"
	mkdir -p src/sub
	echo a >src/f
	echo b >src/sub/g
	PC_TIMEOUT=30 PC_PREFIX="env PCOPY_NO_TMPFILE=1 strace -f -qq -o /dev/null
	    -e trace=flock -e inject=flock:error=ENOLCK" pc src dst
	want_rc 0
	same_tree src dst
}

# Item 8: SIGUSR1 while the parent waits for --files-from lines on a pipe
# only asks for a status: the list goes on (it used to end there, exit 0).
t_list_sigusr1()
{
	have perl || skip "perl missing"
	nr_read=$(perl -e 'require "syscall.ph"; print &SYS_read' 2>/dev/null) ||
	    skip "perl's syscall.ph missing"
	mkdir src
	for n in 1 2 3 4 5 6 7 8 9 10; do
		echo "$n" >"src/f$n"
	done
	mkfifo list
	# not pc_cmd: pcopy must be timeout's child (pgrep -P, and its
	# /proc/PID/syscall is read), and run natively (qemu-user is the
	# process that runs the binary, and reads from the pipe itself)
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	timeout -k 5 $((60 * tmul)) $qemu "$PCOPY" -j 1 --files-from list src dst \
	    </dev/null >pc.out 2>pc.err &
	bg=$!
	exec 3>list
	pid=$(pgrep -P "$bg") || fail "pcopy did not start"
	echo f1 >&3
	# wait until the parent is blocked in read(2), twice 0.1 s apart: the
	# pipe is empty, f1 taken (it waits in a batch until the list ends)
	perl -e 'my ($p, $nr) = @ARGV;
	    my $n = 0;
	    for (1 .. 3000) {
		open my $f, "<", "/proc/$p/syscall" or exit 1;
		my @a = split " ", (<$f> // "");
		$n = @a && $a[0] eq $nr ? $n + 1 : 0;
		exit 0 if $n == 2;
		select undef, undef, undef, 0.1;
	    }
	    exit 1' "$pid" "$nr_read" || fail "pcopy never waited for the list"
	kill -USR1 "$pid"
	for n in 2 3 4 5 6 7 8 9 10; do
		echo "f$n" >&3
	done
	exec 3>&-
	rc=0
	wait "$bg" || rc=$?
	want_rc 0
	grep -q "^pcopy: worker 1 pid [0-9]*: " pc.err || fail "no status: $(cat pc.err)"
	touch -r src dst
	same_tree src dst
}

# Item 12: the -n and -v lists are output; failing to write them fails
# the run, as it does for cp -v.
t_stdout_full()
{
	[ -w /dev/full ] || skip "no /dev/full"
	mkdir src
	echo a >src/f
	for opt in -n -v; do
		PC_TIMEOUT=20 PC_OUT=/dev/full pc "$opt" src "dst$opt"
		want_rc 1 "pcopy $opt >/dev/full"
		grep -q "^pcopy: write error on standard output: " pc.err ||
		    fail "pcopy $opt >/dev/full: no message: $(cat pc.err)"
	done
}

# Item 9: a worker killed while it writes a hidden file (fallback mode)
# leaves nothing behind in a run that exits 0; hidden symlinks and FIFOs
# of a pcopy that is gone are removed too.
t_killed_worker_hidden()
{
	PCOPY_NO_TMPFILE=1
	export PCOPY_NO_TMPFILE
	mkdir -p src dst
	# 512 MiB: long enough to catch its worker on a busy machine (128 MiB
	# went by unseen in some CI runs)
	head -c 536870912 /dev/zero >src/big
	echo a >src/small
	ln -s nowhere dst/.pcopy-tmp.99999999.0
	mkfifo dst/.pcopy-tmp.99999999.1
	pc_bg -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big")
	if [ -z "$w" ]; then
		pc_wait
		skip "never saw the worker copying src/big"
	fi
	ls -A dst | grep -q "^\\.pcopy-tmp\\.$w\\." ||
	    fail "worker $w has no hidden file: $(ls -A dst)"
	kill -KILL "$w"
	pc_wait
	want_rc 0
	left=$(ls -A dst | grep '^\.pcopy-tmp\.' || :)
	[ -z "$left" ] || fail "left behind: $left (worker $w); $(cat pc.err)"
	same_tree src dst
}

# Item 11: a --files-from list that comes back to a read-only directory
# after it was finished still copies into it as non-root (root runs it as
# nobody).
t_files_from_reenter()
{
	as_nobody
	mkdir -p src/a src/b
	echo x >src/a/x
	echo z >src/a/z
	echo y >src/b/y
	chmod 0555 src/a
	printf 'a/x\nb/y\na/z\n' >list
	$runas test -x "$PCOPY" || skip "uid 65534 cannot run $PCOPY"
	pc --files-from list src dst
	want_rc 0
	touch -r src dst
	is_root && chown -R 0:0 dst
	chmod u+w dst/a
	chmod u-w dst/a
	same_tree src dst
}

# Item 13 of issue 15 (and issue 9 item 13): the walk never needs more
# descriptors than it has.  A 600-level tree under `ulimit -n 1024' (a
# common container limit) is copied by parking ancestors; 30 directories
# of 20 files fit in `ulimit -n 32' (the budget counts fdopendir's dup and
# what is open already).
t_deep_fd_limit()
{
	p=src i=1
	while [ $i -le 600 ]; do
		p=$p/d$i
		i=$((i + 1))
	done
	mkdir -p "$p"
	i=600
	while [ $i -ge 1 ]; do
		echo "$i" >"$p/f"
		p=${p%/*}
		i=$((i - 1))
	done
	rc=0
	(ulimit -n 1024 || exit 77; pc src dst; exit "$rc") || rc=$?
	[ "$rc" -ne 77 ] || skip "cannot lower the descriptor limit"
	want_rc 0 "ulimit -n 1024"
	same_tree src dst
}

t_few_fds()
{
	no_valgrind "valgrind needs descriptors of its own"
	for d in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 \
	    25 26 27 28 29 30; do
		mkdir -p "src/d$d"
		for f in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			echo "$d.$f" >"src/d$d/f$f"
		done
	done
	rc=0
	(ulimit -n 32 || exit 77; pc src dst; exit "$rc") || rc=$?
	[ "$rc" -ne 77 ] || skip "cannot lower the descriptor limit"
	want_rc 0 "ulimit -n 32"
	same_tree src dst
}

# Hidden names of a killed run are removed by the next run into the same
# directory, unless a live process holds their lock.  big/ takes several
# reads of the sweep's 32 KiB buffer, with hidden names made first and last.
t_stale_temp()
{
	have flock || skip "flock (util-linux) missing"
	mkdir -p src/sub dst/sub src/big dst/big
	echo a >src/f
	echo b >src/sub/g
	echo stale >dst/big/.pcopy-tmp.12345.0
	i=0
	while [ $i -lt 1500 ]; do
		: >"src/big/a-name-of-sixty-characters-to-fill-the-buffer-sooner-$i"
		i=$((i + 1))
	done
	cp -a src/big/. dst/big/
	echo stale >dst/big/.pcopy-tmp.12345.1
	echo stale >dst/.pcopy-tmp.12345.0
	echo stale >dst/sub/.pcopy-tmp.12345.0
	: >dst/sub/.pcopy-tmp.12345.1
	(
		exec 9>>dst/.pcopy-tmp.999.1
		flock 9
		: >locked
		while [ ! -e release ]; do
			sleep 0.05
		done
	) &
	holder=$!
	at_exit "touch '$(pwd)/release'; wait $holder"
	i=0
	while [ ! -e locked ] && [ $i -lt 500 ]; do
		sleep 0.01
		i=$((i + 1))
	done
	[ -e locked ] || fail "could not lock dst/.pcopy-tmp.999.1"
	pc_ok src dst
	for f in dst/.pcopy-tmp.12345.0 dst/sub/.pcopy-tmp.12345.0 \
	    dst/sub/.pcopy-tmp.12345.1 dst/big/.pcopy-tmp.12345.0 \
	    dst/big/.pcopy-tmp.12345.1; do
		[ ! -e "$f" ] || fail "$f is still there"
	done
	[ -e dst/.pcopy-tmp.999.1 ] ||
	    fail "dst/.pcopy-tmp.999.1 was removed while locked"
	: >release
	wait "$holder"
	rm dst/.pcopy-tmp.999.1
	touch -r src dst
	same_tree src dst
}

# Two runs into one DEST at once, as when shards are re-run over a DEST
# that holds the files already: replacing a file goes through a hidden
# name, which the other run's clean-up of hidden names must leave alone
# ("unless a live pcopy holds their lock").  The other run here copies
# nothing, so it enters DEST, and cleans up, many times.
t_concurrent_runs()
{
	mk_split tree 1 20000 100
	mv tree/d0 src
	pc_ok -q src dst
	rm -f stop
	(
		n=0
		while [ ! -e stop ] && [ $n -lt 500 ]; do
			pc_cmd /dev/null other1.err -q --files-from /dev/null \
			    src dst || echo "exit $?" >>other.err
			cat other1.err >>other.err
			n=$((n + 1))
		done
	) &
	other=$!
	at_exit "touch '$(pwd)/stop'; wait $other"
	pc -q src dst
	: >stop
	wait "$other"
	want_rc 0 "pcopy src dst while other runs enter dst"
	[ ! -s other.err ] || fail "the other runs: $(head -n 5 other.err)"
	same_tree src dst
}

# Without /proc and without CAP_DAC_READ_SEARCH (a FROM scratch container
# run as a user), files are written under hidden names held with flock:
# such a name is locked while its file is written, an interrupted run
# leaves none, a stale one is removed by the next run, and the copy is the
# same.
t_named_temp()
{
	no_valgrind "runs pcopy without /proc"
	is_root || skip "needs root (a mount namespace without /proc)"
	have unshare && have setpriv && have flock ||
	    skip "unshare, setpriv or flock (util-linux) missing"
	unshare -m sh -c 'mount -t tmpfs none /proc' 2>/dev/null ||
	    skip "cannot hide /proc in a mount namespace"
	setpriv --reuid=65534 --regid=65534 --clear-groups -- test -x "$PCOPY" ||
	    skip "uid 65534 cannot run $PCOPY"
	chmod 0711 "$T"
	chmod 0777 .
	cat >noproc <<'SH'
#!/bin/sh
mount -t tmpfs none /proc || exit 97
exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
SH
	chmod 0755 noproc
	mkdir -p src/big
	# 768 MiB: the copy must last long enough to be seen (3 x 64 MiB went
	# by in 0.22 s once, under qemu, three suites side by side)
	for n in 1 2 3; do
		head -c 268435456 /dev/zero >src/big/z$n
	done
	mk_files src/small 3 10
	chown -R 65534:65534 src
	PC_PREFIX="unshare -m $(pwd)/noproc"
	# kernels since 6.10 let a user link its own O_TMPFILE without /proc;
	# PCOPY_NO_TMPFILE makes pcopy take the hidden-name path of older ones
	PCOPY_NO_TMPFILE=1
	export PCOPY_NO_TMPFILE
	pc_bg -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big/")
	if [ -z "$w" ]; then
		pc_wait
		fail "never saw the worker copying src/big (exit $rc):
$(head -n 5 pc.err)"
	fi
	at_exit "kill -CONT $w 2>/dev/null"
	hidden=$(find dst -name '.pcopy-tmp.*' | head -n 1)
	if [ -n "$hidden" ]; then
		! flock -n "$hidden" true ||
		    fail "$hidden is not locked while written"
	fi
	kill -INT "$pid"
	kill -CONT "$w"
	pc_wait
	want_rc 130 "after SIGINT"
	no_procs_left 2
	no_temp_files dst
	files_match src dst
	echo stale >dst/.pcopy-tmp.4242.0
	pc_bg -q src dst
	pc_wait
	want_rc 0
	same_tree src dst
	[ -n "$hidden" ] || fail "no hidden name was seen while a file was written"
	[ ! -e dst/.pcopy-tmp.4242.0 ] || fail "the stale hidden name was not swept"
}

# More usage errors: each exits 2 with one line and creates nothing (see
# usage_err).  (-j '' and a FIFO SOURCE are also in t_usage_errors.)
t_bad_args_more()
{
	mkdir src
	echo a >src/f
	mkfifo fifo
	echo f >list
	echo plain >plain
	bad=0
	usage_err "job|-j|'j'" -j '' src dstX
	usage_err fifo fifo dstX
	for s in 0/3 4/3 x 1/0 /3 3/ 1/3x -1/3 1//3''; do
		usage_err "shard" --shard "$s" src dstX
	done
	usage_err "nonexistent" --files-from /nonexistent src dstX
	usage_err "plain|directory" --files-from list plain dstX
	usage_err "exclude|pattern" --exclude '' src dstX
	usage_err "nonexistent" nonexistent dstX
	usage_err 'usage|source|operand|missing' -j 2
	[ "$bad" -eq 0 ]
}

# -- options --

# -u skips files whose copy has the same size and mtime without touching
# them; it also finishes an interrupted copy.
t_update()
{
	mk_files src 3 5
	echo "same size" >src/m_size
	echo "same time" >src/m_time
	pc_ok src dst
	same_tree src dst
	find dst -type f -printf '%P %i %C@\n' | sort >before
	sleep 0.1       # a rewrite or a touch now changes the ctime
	echo "now longer" >>src/m_size
	touch -d '2002-02-02 02:02:02.2' src/m_time
	pc_ok -u src dst
	same_tree src dst
	find dst -type f -printf '%P %i %C@\n' | sort >after
	grep -v '^m_' before >want
	grep -v '^m_' after >got
	cmp -s want got || fail "-u touched up-to-date files:
$(diff want got | head -n 10)"
	for f in m_size m_time; do
		[ "$(grep "^$f " before)" != "$(grep "^$f " after)" ] ||
		    fail "-u did not copy the changed $f"
	done
	grep -Eq '^pcopy: 2 files, .*, 15 skipped' pc.err ||
	    fail "want 2 files copied, 15 skipped: $(cat pc.err)"

	# an interrupted copy, then -u: the same tree, and the files that
	# were complete are left alone
	mk_mid_tree src2
	total=$(find src2 -type f | wc -l)
	pc_bg -q src2 dst2
	stop_mid_copy dst2 "$total" 2000
	kill -TERM "$pid" 2>/dev/null || :
	kill -CONT "$pid" 2>/dev/null || :
	pc_wait
	if [ "$mid" -eq 1 ]; then
		want_rc 143 "after SIGTERM"
	fi
	find dst2 -type f -printf '%P %i\n' | sort >done1
	pc_ok -u src2 dst2
	same_tree src2 dst2
	find dst2 -type f -printf '%P %i\n' | sort | join - done1 |
	    awk '$2 != $3' >moved
	[ ! -s moved ] || fail "-u replaced files that were complete:
$(head -n 5 moved)"
	n=$(wc -l <done1)
	grep -Eq ", $n skipped" pc.err ||
	    fail "-u after SIGTERM: want $n skipped: $(cat pc.err)"
}

# verify_torn FILE: the counters the rewriter wrote at the head and tail
# of FILE (a copy) show it changed while it was read: the tail is newer.
verify_torn()
{
	vt_h=$(head -c 20 "$1" | tr -cd 0-9)
	vt_t=$(tail -c 20 "$1" | tr -cd 0-9)
	awk -v h="${vt_h:-0}" -v t="${vt_t:-0}" 'BEGIN { exit !(t + 0 > h + 0) }'
}

# rewriter FILE: in the background, write an increasing counter at the head
# and then at the tail of FILE, about a thousand times a second, until
# ./stop-rewriter exists (or 60 s have passed).
rewriter()
{
	rm -f stop-rewriter
	perl -e 'alarm 60; open(my $f, "+<", $ARGV[0]) or die "$ARGV[0]: $!";
	    my $end = (-s $f) - 20;
	    for (my $n = 1; !-e "stop-rewriter"; $n++) {
		my $s = sprintf("%020d", $n);
		sysseek($f, 0, 0); syswrite($f, $s);
		sysseek($f, $end, 0); syswrite($f, $s);
		select(undef, undef, undef, 0.0005);
	    }' "$1" &
	rw_pid=$!
	at_exit "touch '$(pwd)/stop-rewriter'; wait $rw_pid"
	i=0
	while [ -z "$(head -c 20 "$1" | tr -d '\0')" ] && [ $i -lt 500 ]; do
		sleep 0.01
		i=$((i + 1))
	done
}

rewriter_stop()
{
	: >stop-rewriter
	wait "$rw_pid" || :
}

# --verify: a clean copy passes; a file rewritten while it is copied is
# named, not given its name in DEST, and the rest is copied.
#
# The rewriter puts the same counter at the head and the tail of a 200 MiB
# file; pcopy reads the head first, so a copy whose tail counter is newer
# than its head counter was torn by a rewrite, and --verify, which reads
# the source again afterwards, must have seen the head change.  A run that
# happened to see no rewrite is retried; if none of five is caught, a plain
# copy under the same rewriter tells whether the rewrites reach pcopy at
# all: if its copy is torn, --verify missed them (fail), else skip.
t_verify()
{
	have perl || skip "perl missing"
	mk_files src 3 10
	pc_ok --verify src dst
	same_tree src dst
	head -c 209715200 /dev/zero >src/big
	caught=0
	for try in 1 2 3 4 5; do
		rewriter src/big
		pc --verify -j 1 src v$try
		rewriter_stop
		case $rc in
		1)
			grep -q "^pcopy: 'src/big': verification failed" pc.err ||
			    fail "exit 1 without 'src/big': verification failed:
$(head -n 5 pc.err)"
			[ ! -e v$try/big ] || fail "v$try/big exists after failing"
			no_temp_files v$try
			rm src/big
			touch -r src v$try
			same_tree src v$try
			caught=1
			break
			;;
		0)
			! verify_torn v$try/big ||
			    fail "--verify passed v$try/big, torn by a rewrite"
			;;
		*)
			fail "pcopy --verify: exit $rc: $(head -n 5 pc.err)"
			;;
		esac
		rm -rf v$try
	done
	[ "$caught" -eq 0 ] || return 0
	rewriter src/big
	pc -j 1 src plain
	rewriter_stop
	! verify_torn plain/big ||
	    fail "--verify never failed, yet a plain copy was torn by the rewrites"
	skip "the rewrites never reached pcopy while it read src/big"
}

# --fsync: the copy is the same, and fsync is called for every file and
# directory (checked with strace when it is there).
t_fsync()
{
	mk_files src 5 10              # 50 files, 6 dirs
	pc_ok --fsync src dst
	same_tree src dst
	have strace || skip "strace missing: fsync calls not counted"
	# (qemu-user makes the same fsync calls on the host: strace sees them)
	no_valgrind "strace counts the system calls of the binary itself"
	[ -z "$PCOPY_SANITIZED" ] || skip "a sanitized build: strace counts not checked"
	for o in --fsync ""; do
		# shellcheck disable=SC2086 # $o is an option or nothing
		PC_PREFIX="strace -f -c -o strace$o.out -e trace=fsync" \
		    pc -q $o src dst2$o
		if [ "$rc" -ne 0 ] && [ ! -e dst2$o ]; then
			skip "strace cannot trace here: $(head -n 1 pc.err)"
		fi
		want_rc 0 "strace pcopy $o"
		same_tree src dst2$o
	done
	n=$(awk '$NF == "fsync" { print $4 }' strace--fsync.out)
	[ "${n:-0}" -ge 56 ] ||
	    fail "--fsync: ${n:-0} fsync calls for 50 files and 6 dirs"
	n=$(awk '$NF == "fsync" { print $4 }' strace.out)
	[ "${n:-0}" -eq 0 ] || fail "no --fsync, yet $n fsync calls"
}

# -n: print what would be created, replaced or skipped; change nothing.
t_dry_run()
{
	mkdir -p src/a/b src/new
	echo 1 >src/keep
	echo 2 >src/changed
	echo 3 >src/gone
	echo 4 >src/a/b/deep
	echo 5 >src/new/f
	ln -s keep src/link
	pc -n src dst
	want_rc 0 "-n into a new dst"
	[ ! -e dst ] && [ ! -L dst ] || fail "-n created dst"
	for p in keep changed gone a/b/deep new/f link; do
		grep -qx "create $p" pc.out || fail "-n: no 'create $p':
$(cat pc.out)"
	done
	for p in a a/b new; do
		grep -Eqx "create $p/?" pc.out || fail "-n: no 'create $p':
$(cat pc.out)"
	done
	grep -Evq '^(create|replace|skip) ' pc.out && fail "-n: odd lines:
$(grep -Ev '^(create|replace|skip) ' pc.out)"

	# a partial dst: one file up to date, one changed, one missing, one
	# missing directory; and a hidden name that a real run would remove
	cp -a src dst
	rm -r dst/gone dst/new
	echo "2, but changed" >dst/changed
	echo stale >dst/.pcopy-tmp.1.1
	find dst -printf '%P %y %m %U:%G %T@ %C@ %s %i %l\n' | sort >snap
	for u in "" -u; do
		pc -n $u src dst
		want_rc 0 "-n $u"
		find dst -printf '%P %y %m %U:%G %T@ %C@ %s %i %l\n' | sort >now
		cmp -s snap now || fail "-n $u changed dst:
$(diff snap now | head -n 10)"
		[ -z "$u" ] && want=replace || want=skip
		for l in "$want keep" "$want a/b/deep" "replace changed" \
		    "create gone" "create new/f" "$want link"; do
			grep -qx "$l" pc.out || fail "-n $u: no '$l':
$(cat pc.out)"
		done
		grep -Eqx 'create new/?' pc.out || fail "-n $u: no 'create new':
$(cat pc.out)"
	done
	rm dst/.pcopy-tmp.1.1
}

# --exclude: a name anywhere, or trailing components of a path at any
# depth ('a/b': also x/a/b, as in rsync); an excluded directory is not
# even read (its atime stays).
t_exclude()
{
	mkdir -p src/d/e src/a/b/in src/a/c/b src/x/a/b src/junk.o
	for f in top.o keep.c d/mid.o d/keep.h d/e/deep.o d/e/keep.txt \
	    a/b/f a/b/in/g a/c/b/h x/a/b/i junk.o/inside a/keep; do
		echo "$f" >"src/$f"
	done
	pc_ok --exclude '*.o' --exclude 'a/b' src dst
	cp -a src want
	rm -r want/top.o want/d/mid.o want/d/e/deep.o want/junk.o want/a/b \
	    want/x/a/b
	dir_times_from src want
	same_tree want dst
	pc_ok --exclude 'zzz*' --exclude 'no/such' src dst3
	same_tree src dst3
}

# An excluded directory is not even opened: one that cannot be read
# (mode 0000; root runs pcopy as nobody) fails the run unless excluded,
# by name or by path.
t_exclude_unread()
{
	as_nobody
	$runas test -x "$PCOPY" || skip "uid 65534 cannot run $PCOPY"
	mkdir -p src/a/locked src/b
	echo in >src/a/locked/f
	echo keep >src/b/keep
	chmod 0000 src/a/locked
	pc src dst0
	want_rc 1 "without --exclude"
	pc --exclude locked src dst1
	want_rc 0 "--exclude locked"
	pc --exclude a/locked src dst2
	want_rc 0 "--exclude a/locked"
	[ ! -e dst2/a/locked ] || fail "dst2/a/locked exists"
	cmp src/b/keep dst2/b/keep || fail "dst2/b/keep differs"
}

# -x: a mount point in SOURCE becomes an empty directory.
t_one_fs()
{
	is_root || skip "needs root to mount a tmpfs"
	mkdir -p src/mnt src/sub
	echo a >src/sub/f
	m=$(pwd -P)/src/mnt
	mount -t tmpfs -o size=1m pcopy-test "$m" 2>/dev/null ||
	    skip "cannot mount a tmpfs"
	at_exit "umount -l '$m' 2>/dev/null"
	mkdir src/mnt/deeper
	echo other >src/mnt/file
	echo deep >src/mnt/deeper/g
	pc_ok -x src dst
	[ -d dst/mnt ] || fail "-x: dst/mnt missing"
	[ -z "$(ls -A dst/mnt)" ] || fail "-x: dst/mnt not empty: $(ls -A dst/mnt)"
	same_tree src/sub dst/sub
	pc_ok src dst2
	same_tree src dst2
	cmp src/mnt/deeper/g dst2/mnt/deeper/g
}

# --files-from: only the listed paths, their parents with the source's
# metadata, listed directories whole; "./" prefixes are fine, paths that
# leave SOURCE are refused.
t_files_from()
{
	mkdir -p src/a/b src/x/y src/other
	echo f >src/a/b/f
	echo h >src/a/b/h
	echo g >src/a/g
	echo top >src/top
	echo skip >src/skipped
	echo xf >src/x/f
	echo xy >src/x/y/z
	echo o >src/other/o
	nlname="new${nl}line"
	echo nl >"src/other/$nlname"
	chmod 0750 src/a
	chmod 0700 src/a/b
	touch -d '2001-01-01 01:01:01.1' src/a/b
	touch -d '2002-02-02 02:02:02.2' src/a
	touch -d '2003-03-03 03:03:03.3' src
	# the expected result
	cp -a src want
	rm -r want/a/b/h want/a/g want/skipped want/other
	dir_times_from src want

	printf '%s\n' a/b/f x ./top >list
	pc_ok --files-from list src dst
	same_tree want dst
	printf 'a/b/f\0x\0./top\0' >list0
	pc_ok -0 --files-from list0 src dst0
	same_tree want dst0
	PC_STDIN=list pc --files-from - src dsts
	want_rc 0 "--files-from -"
	same_tree want dsts

	# a name with a newline, NUL-separated
	mkdir -p want/other
	cp -a "src/other/$nlname" want/other/
	dir_times_from src want
	printf 'a/b/f\0x\0./top\0other/%s\0' "$nlname" >list0
	pc_ok --null --files-from list0 src dstn
	same_tree want dstn

	# paths out of SOURCE: refused (exit 1, named), the rest copied
	for bad in ../outside /etc/passwd a/../../x a/b/../../top; do
		printf '%s\n' "$bad" a/b/f >list
		pc --files-from list src dstbad
		want_rc 1 "listed '$bad'"
		grep -qF "'$bad'" pc.err ||
		    fail "listed '$bad' not named: $(cat pc.err)"
		cmp src/a/b/f dstbad/a/b/f
		[ "$(find dstbad -type f | wc -l)" -eq 1 ] ||
		    fail "listed '$bad': copied more than a/b/f"
		rm -rf dstbad
	done
	[ ! -e outside ] || fail "wrote ./outside"
}

# --shard: three concurrent runs copy disjoint shares of the files (a hard
# link group in one of them), then one `pcopy -u' copies nothing and the
# result equals one plain run.
t_shard()
{
	mk_split src 6 40 300
	mkdir -p src/links src/ro dst/d1
	echo stale >dst/d1/.pcopy-tmp.12345.0   # a killed run's: the final -u sweeps
	echo grouped >src/d0/g1
	ln src/d0/g1 src/links/g2
	ln src/d0/g1 src/d5/g3
	echo in-ro >src/ro/f
	chmod 0555 src/ro
	touch -d '2004-04-04 04:04:04.4' src/d3 src/links
	bgs=
	for k in 1 2 3; do
		pc_cmd shard$k.out shard$k.err -q -v --shard $k/3 src dst &
		bgs="$bgs $!"
	done
	k=0
	for b in $bgs; do
		k=$((k + 1))
		rc=0
		wait "$b" || rc=$?
		wrap_check shard$k.err
		[ "$rc" -eq 0 ] ||
		    fail "--shard $k/3: exit $rc: $(head -n 5 shard$k.err)"
		[ ! -s shard$k.err ] ||
		    fail "--shard $k/3 said: $(head -n 5 shard$k.err)"
	done
	find src -type d -printf '%P\n' | sort >dirs
	find src ! -type d -printf '%P\n' | sort >all
	for k in 1 2 3; do
		sort shard$k.out | comm -23 - dirs >files$k
		[ -s files$k ] || fail "--shard $k/3 copied no file"
	done
	sort files1 files2 files3 | uniq -d >twice
	[ ! -s twice ] || fail "copied by two shards: $(head -n 5 twice)"
	sort files1 files2 files3 | cmp -s - all ||
	    fail "the shards together did not copy every file once:
$(sort files1 files2 files3 | diff - all | head -n 10)"
	pc_ok -u src dst
	grep -Eq "^pcopy: 0 files, .*, $(wc -l <all) skipped" pc.err ||
	    fail "-u after the shards: want 0 files, $(wc -l <all) skipped:
$(cat pc.err)"
	[ ! -e dst/d1/.pcopy-tmp.12345.0 ] || fail "the final -u did not sweep"
	same_tree src dst
}

# -- progress and big files under faults --

# snap_tree DIR OUT: everything about DIR's entries that a change would touch.
snap_tree()
{
	find "$1" -printf '%P %y %m %U:%G %T@ %C@ %s %i %l\n' | sort >"$2"
}

# mk_mirror: src, and dst a copy of it that has drifted: entries src lost
# (files, a symlink, whole subtrees, in the top and deeper) are still in
# dst, one file changed.
mk_mirror()
{
	mkdir -p src/a/b src/c
	echo 1 >src/top
	echo 2 >src/a/f
	echo 3 >src/a/b/g
	echo 4 >src/c/h
	ln -s top src/link
	pc_ok src dst
	mkdir -p dst/old/deep/er dst/a/b/gone dst/c/ro
	echo x >dst/old/deep/er/z
	echo y >dst/old/f
	echo z >dst/a/b/gone/f
	echo w >dst/a/stale
	ln -s /nonexistent dst/c/dangling
	echo v >dst/c/ro/f
	chmod 0555 dst/c/ro     # a read-only directory goes too
	echo changed >dst/a/f
}

# --delete: what SOURCE lacks goes, wherever it is; -v and -n list the
# same `delete PATH' lines, -n changes nothing, the summary counts them.
t_delete()
{
	mk_mirror
	snap_tree dst before
	pc -n --delete src dst
	want_rc 0 "-n --delete"
	snap_tree dst after
	cmp -s before after || fail "-n --delete changed dst:
$(diff before after | head -n 10)"
	grep '^delete ' pc.out | sort >dry
	grep -q 'dry run: would copy .*, 11 deleted' pc.err ||
	    fail "-n summary does not count 11 deletions: $(cat pc.err)"
	cat >want <<'LIST'
delete a/b/gone/
delete a/b/gone/f
delete a/stale
delete c/dangling
delete c/ro/
delete c/ro/f
delete old/
delete old/deep/
delete old/deep/er/
delete old/deep/er/z
delete old/f
LIST
	diff want dry || fail "-n --delete: wrong list (above)"
	pc_ok -v --delete src dst
	grep '^delete ' pc.out | sort >real
	diff dry real || fail "-v --delete and -n --delete disagree (above)"
	grep -q ', 11 deleted' pc.err || fail "summary: $(cat pc.err)"
	same_tree src dst
	pc_ok --delete src dst  # nothing left to do
	grep -q deleted pc.err && fail "second run deleted: $(cat pc.err)"
	same_tree src dst
}

# A symlink in DEST is removed as a link, never followed: not where SOURCE
# lacks the name, not where SOURCE has a directory in its place, not
# inside a subtree being removed.
t_delete_symlink_out()
{
	mkdir -p src/sub outside/in
	echo keep >outside/in/f
	echo keep >outside/g
	echo a >src/sub/f
	pc_ok src dst
	out=$(pwd -P)/outside
	ln -s "$out" dst/extra          # SOURCE lacks it
	ln -s "$out/in" dst/sub/d       # SOURCE lacks it
	mkdir -p dst/gone/deeper
	ln -s "$out" dst/gone/l         # inside a subtree that goes
	ln -s "$out" dst/gone/deeper/l
	mkdir src/asdir                 # SOURCE has a directory there
	echo b >src/asdir/f
	ln -s "$out" dst/asdir
	snap_tree outside before
	pc_ok --delete src dst
	snap_tree outside after
	cmp -s before after || fail "--delete touched what a symlink in DEST points to:
$(diff before after)"
	same_tree src dst
}

# An unreadable SOURCE directory: nothing in its DEST counterpart is
# deleted, and that is said; deletions elsewhere go on; exit 1.
t_delete_unreadable()
{
	as_nobody
	$runas test -x "$PCOPY" || skip "uid 65534 cannot run $PCOPY"
	mkdir -p src/locked src/ok
	echo 1 >src/locked/f
	echo 2 >src/ok/f
	chmod -R a+rwX src
	pc_ok -q src dst
	$runas sh -c 'echo x >dst/locked/extra && echo y >dst/ok/extra'
	chmod 0000 src/locked
	pc -q --delete src dst
	chmod 0755 src/locked dst/locked
	want_rc 1
	grep -q "^pcopy: 'dst/locked': SOURCE directory not read: nothing deleted" pc.err ||
	    fail "not said that nothing is deleted in dst/locked: $(cat pc.err)"
	[ -f dst/locked/extra ] || fail "dst/locked/extra deleted"
	[ -f dst/locked/f ] || fail "dst/locked/f deleted"
	[ ! -e dst/ok/extra ] || fail "dst/ok/extra not deleted"
}

# ^C in the middle of deleting a big subtree: exit 130; what is left is
# whole entries (no temporaries), and a re-run finishes the mirror.
t_delete_sigint()
{
	mkdir -p src/sub
	echo a >src/sub/f
	pc_ok src dst
	mk_split dst/old 40 1000 1      # 40,000 entries to delete
	total=$(find dst/old -type f | wc -l)
	pc_bg -q --delete src dst
	dsi_i=0
	while [ $dsi_i -lt $((2000 * tmul)) ] && alive "$pid" &&
	    [ "$(find dst/old -type f 2>/dev/null | wc -l)" -ge "$total" ]; do
		sleep 0.005
		dsi_i=$((dsi_i + 1))
	done
	kill -STOP "$pid" 2>/dev/null || :
	at_exit "kill -CONT $pid 2>/dev/null"
	left=$(find dst/old -type f 2>/dev/null | wc -l)
	kill -INT "$pid" 2>/dev/null || :
	kill -CONT "$pid" 2>/dev/null || :
	pc_wait
	if [ "$rc" -eq 0 ] && { [ "$left" -eq 0 ] || [ "$left" -ge "$total" ]; }; then
		same_tree src dst
		skip "the deletion was not caught in the middle ($left of $total left)"
	fi
	want_rc 130 "after SIGINT mid-delete"
	[ -d dst/old ] || fail "the deletion ran to its end after SIGINT"
	no_procs_left 2
	no_temp_files dst
	pc_ok -q --delete src dst
	same_tree src dst
}

# --delete with --shard or --files-from is refused (a shard would delete
# the others' files), and so is a SOURCE inside DEST; nothing is changed.
t_delete_refused()
{
	mkdir src
	echo a >src/f
	pc_ok src dst
	echo x >dst/extra
	echo f >list
	bad=0
	usage_err "delete.*shard" --delete --shard 1/2 src dst
	usage_err "delete.*files-from" --delete --files-from list src dst
	usage_err "delete.*shard" --delete-excluded --shard 2/2 src dst
	[ -f dst/extra ] || fail "a refused run deleted dst/extra"
	# SOURCE inside DEST: mirroring would delete SOURCE itself
	mkdir -p top/a/src
	echo b >top/a/src/g
	usage_err "inside DEST" --delete top/a/src top
	usage_err "inside DEST" -n --delete top/a/src/ top/
	[ -f top/a/src/g ] || fail "--delete deleted its own SOURCE"
	[ "$bad" -eq 0 ]
}

# A type change: with --delete the old entry is replaced; file over
# directory, directory (with contents) over file, directory over symlink.
t_delete_type_change()
{
	mkdir -p src/wasfile src/waslink src/x
	echo a >src/wasdir
	echo b >src/wasfile/f
	echo c >src/waslink/f
	echo d >src/x/wasdir2
	mkdir -p dst/wasdir/deep dst/x/wasdir2
	echo old >dst/wasdir/deep/f
	echo old >dst/wasfile
	ln -s x dst/waslink
	pc -n --delete src dst
	want_rc 0 "-n"
	grep '^delete ' pc.out | sort >dry
	pc_ok -v --delete src dst
	grep '^delete ' pc.out | sort >real
	diff dry real || fail "-n and the real run disagree (above)"
	same_tree src dst
	# without --delete: named, as before
	rm -r dst
	mkdir -p dst/wasdir
	pc src dst
	want_rc 1 "without --delete"
	grep -q "dst/wasdir': cannot overwrite directory" pc.err ||
	    fail "without --delete: not named: $(cat pc.err)"
}

# Excluded names are not deleted; --delete-excluded deletes them.
t_delete_excluded()
{
	mkdir -p src/sub src/cache
	echo a >src/sub/f
	echo b >src/cache/c
	echo c >src/keep.o
	pc_ok src dst
	mkdir -p dst/sub/cache
	echo o >dst/x.o
	echo o >dst/sub/y.o
	echo z >dst/sub/cache/z
	echo gone >dst/gone
	pc_ok --delete --exclude '*.o' --exclude 'cache/' src dst
	for f in x.o sub/y.o keep.o sub/cache/z cache/c; do
		[ -e "dst/$f" ] || fail "--delete deleted excluded dst/$f"
	done
	[ ! -e dst/gone ] || fail "dst/gone not deleted"
	pc_ok -v --delete-excluded --exclude '*.o' --exclude 'cache/' src dst
	for f in x.o sub/y.o keep.o sub/cache cache; do
		[ ! -e "dst/$f" ] || fail "--delete-excluded left dst/$f"
	done
	grep -qx 'delete sub/cache/z' pc.out || fail "-v: $(cat pc.out)"
	[ -f dst/sub/f ] || fail "dst/sub/f deleted"
}

# -x --delete: nothing is deleted below the DEST counterpart of a mount
# point, which -x does not read.
t_delete_one_fs()
{
	is_root || skip "needs root to mount a tmpfs"
	mkdir -p src/mnt src/sub
	echo a >src/sub/f
	m=$(pwd -P)/src/mnt
	mount -t tmpfs -o size=1m pcopy-test "$m" 2>/dev/null ||
	    skip "cannot mount a tmpfs"
	at_exit "umount -l '$m' 2>/dev/null"
	echo other >src/mnt/file
	pc_ok src dst                   # dst/mnt/file copied
	echo extra >dst/sub/extra
	echo extra >dst/mnt/extra       # not in SOURCE's mount either
	pc_ok -x --delete src dst
	[ -f dst/mnt/file ] && [ -f dst/mnt/extra ] ||
	    fail "-x --delete deleted below a mount point"
	[ ! -e dst/sub/extra ] || fail "-x --delete left dst/sub/extra"
}

# Removing a subtree never crosses into another file system mounted in
# DEST: the mount point is named (exit 1) and what is mounted there stays.
t_delete_dest_mount()
{
	is_root || skip "needs root to mount a tmpfs"
	mkdir -p src dst/old/mnt
	echo a >src/f
	echo b >dst/old/g
	m=$(pwd -P)/dst/old/mnt
	mount -t tmpfs -o size=1m pcopy-test "$m" 2>/dev/null ||
	    skip "cannot mount a tmpfs"
	at_exit "umount -l '$m' 2>/dev/null"
	echo keep >dst/old/mnt/k
	pc --delete src dst
	want_rc 1
	grep -q "^pcopy: 'dst/old/mnt': cannot delete: a mount point" pc.err ||
	    fail "mount point not named: $(cat pc.err)"
	[ -f dst/old/mnt/k ] || fail "deleted inside a mount point in DEST"
	[ ! -e dst/old/g ] || fail "dst/old/g not deleted"
	cmp src/f dst/f
}

# After ENOSPC nothing more is deleted (the top directory, finished last,
# keeps what SOURCE lacks).
t_delete_enospc()
{
	is_root || skip "needs root to mount a tmpfs"
	mkdir mnt src
	mnt=$(pwd -P)/mnt
	mount -t tmpfs -o size=1m pcopy-test "$mnt" 2>/dev/null ||
	    skip "cannot mount a tmpfs"
	at_exit "umount -l '$mnt' 2>/dev/null"
	head -c 4194304 /dev/urandom >src/big
	mkdir mnt/dst
	echo old >mnt/dst/extra
	pc -q --delete src mnt/dst
	want_rc 1
	grep -q "No space left on device" pc.err || fail "no ENOSPC: $(cat pc.err)"
	[ -f mnt/dst/extra ] || fail "deleted after ENOSPC"
}

# inject_setup: skip unless strace can make pcopy's own system calls fail
# (-e inject; no device mapper needed).  Not under valgrind, whose system
# calls would be the ones made to fail; qemu-user makes the binary's own
# on the host (and none of these for itself).
inject_setup()
{
	no_valgrind "strace injects errors into the binary itself"
	have strace || skip "strace missing"
	mkdir inject.probe
	strace -f -qq -o /dev/null -e trace=getdents64 \
	    -e inject=getdents64:error=EIO ls inject.probe 2>&1 |
	    grep -q 'Input/output error' || skip "strace cannot inject errors here"
	rmdir inject.probe
}

# inject SYSCALLS ERRNO WHEN PATH ARG...: run pcopy ARG... (pc) with
# SYSCALLS (comma-separated) failing with ERRNO on PATH (an absolute
# path: -P also matches calls on a descriptor of it), from the WHEN-th
# such call of each process on ('1+': all).
inject()
{
	ij_sys=$1 ij_err=$2 ij_when=$3 ij_path=$4
	shift 4
	PC_PREFIX="strace -f -qq -o /dev/null -e trace=$ij_sys \
	    -e inject=$ij_sys:error=$ij_err:when=$ij_when -P $ij_path" pc "$@"
}

# A SOURCE directory whose xattr list cannot be read (EIO) is named, and
# its DEST counterpart, which existed, keeps the xattrs it had: nothing is
# removed on the strength of a list that was not read.
t_xattr_list_error()
{
	inject_setup
	have setfattr && have getfattr || skip "setfattr/getfattr missing (attr)"
	mkdir -p src/d dst/d
	echo x >src/d/f
	setfattr -n user.keep -v 1 dst/d 2>/dev/null || skip "no user xattrs here"
	inject flistxattr EIO 1 "$(pwd -P)/src/d" -q src dst
	want_rc 1 "SOURCE's xattr list unreadable"
	grep -q "^pcopy: 'dst/d': extended attributes not copied: I/O error" pc.err ||
	    fail "not named: $(cat pc.err)"
	[ "$(getfattr --only-values -n user.keep dst/d 2>/dev/null)" = 1 ] ||
	    fail "dst/d lost user.keep although SOURCE's list was not read"
}

# A SOURCE listing that fails after its first batch (getdents64 made to
# fail on the second call): its DEST counterpart keeps every name and
# that is said, exit 1.  An EIO also stops deletions everywhere else (the
# top directory, finished last, keeps its extra name); another error
# (ESTALE, as from NFS) stops them in that directory only.
t_delete_listing_error()
{
	inject_setup
	mkdir -p src/big src/sub
	i=0
	while [ $i -lt 300 ]; do        # the walk reads 8 kB at a time
		echo $i >src/big/a-name-long-enough-to-need-several-reads-$i
		i=$((i + 1))
	done
	echo a >src/sub/f
	pc_ok -q src dst
	big=$(pwd -P)/src/big
	for e in ESTALE EIO; do
		echo x >dst/big/extra
		echo x >dst/sub/extra
		echo x >dst/extra
		inject getdents64 "$e" 2 "$big" -q --delete src dst
		want_rc 1 "$e in the listing of src/big"
		case $e in
		EIO) why='I/O error' ;;
		*) why='Stale file handle' ;;
		esac
		[ "$(find dst/big -type f | wc -l)" -eq 301 ] ||
		    fail "$e: names deleted in dst/big: $(find dst/big -type f | wc -l) of 301 left"
		grep -q "^pcopy: 'src/big': $why" pc.err ||
		    fail "$e: the listing's error not named: $(cat pc.err)"
		grep -q "^pcopy: 'dst/big': SOURCE directory not read completely: nothing deleted in it" pc.err ||
		    fail "$e: not said that nothing is deleted in dst/big: $(cat pc.err)"
		if [ "$e" = EIO ]; then
			[ -f dst/extra ] || fail "EIO: dst/extra deleted after the EIO"
			grep -q "^pcopy: 'dst': I/O error seen: deleting nothing more in this run" pc.err ||
			    fail "EIO: not said that deletions stop: $(cat pc.err)"
		else
			grep -q 'deleting nothing more' pc.err &&
			    fail "ESTALE stopped every deletion: $(cat pc.err)"
			[ ! -e dst/extra ] && [ ! -e dst/sub/extra ] ||
			    fail "ESTALE in src/big stopped deletions elsewhere"
		fi
	done
	pc_ok -q --delete src dst
	same_tree src dst
}

# A worker's copy failing with EIO (its copy_file_range and read on one
# source file made to fail): no deletion after it in the run -- not in
# that file's directory nor in the top one, both finished after the
# failure is reported -- and that is said, exit 1.
t_delete_copy_eio()
{
	inject_setup
	mkdir -p src/a
	echo old >src/a/f
	pc_ok -q src dst
	echo new >src/a/f               # changed: copied again
	echo x >dst/a/extra
	echo x >dst/extra
	inject copy_file_range,read,pread64 EIO 1+ "$(pwd -P)/src/a/f" \
	    -q --delete src dst
	want_rc 1 "EIO copying src/a/f"
	[ -f dst/a/extra ] || fail "dst/a/extra deleted after the EIO"
	[ -f dst/extra ] || fail "dst/extra deleted after the EIO"
	grep -q "^pcopy: 'src/a/f': I/O error" pc.err ||
	    fail "the copy's EIO not named: $(cat pc.err)"
	grep -q "^pcopy: 'dst': I/O error seen: deleting nothing more in this run" pc.err ||
	    fail "not said that deletions stop: $(cat pc.err)"
	pc_ok -q --delete src dst       # without the error: both go
	same_tree src dst
}

# -c: with -u, a file whose size and mtime match but whose bytes differ is
# copied again; an unchanged one is skipped; -n -c says which.
t_checksum()
{
	mkdir -p src/d
	echo "same size 1" >src/d/a
	echo "unchanged" >src/b
	pc_ok src dst
	echo "SAME SIZE 1" >dst/d/a
	touch -r src/d/a dst/d/a
	touch -r src/d dst/d
	pc_ok -u src dst
	cmp -s src/d/a dst/d/a && fail "-u alone noticed the content (test is broken)"
	pc -n -u -c src dst
	grep -qx 'replace d/a' pc.out || fail "-n -c: $(cat pc.out)"
	grep -qx 'skip b' pc.out || fail "-n -c: $(cat pc.out)"
	pc_ok -u -c src dst
	grep -q '1 files.*1 skipped' pc.err || fail "-u -c summary: $(cat pc.err)"
	same_tree src dst
	pc_ok -c src dst        # -c implies -u
	grep -q '0 files.*2 skipped' pc.err || fail "-c summary: $(cat pc.err)"
	same_tree src dst
}

# Filters: --exclude-from with comments and blank lines, directory-only
# patterns ('proc/'), anchored ones ('/run/'), --include before --exclude
# (first match wins), --include-from, "+ "/"- " prefixes.
t_filters()
{
	mkdir -p src/proc src/sub/proc src/run src/sub/run src/d
	for f in proc/a sub/proc/b run/c sub/run/d file.o keep.o d/x.o d/y.c; do
		echo "$f" >"src/$f"
	done
	echo notadir >src/d/proc
	printf '# comment\n\n; another\nproc/\n/run/\n' >ex
	pc_ok --exclude-from ex src dst
	cp -a src want
	rm -r want/proc want/sub/proc want/run
	dir_times_from src want
	same_tree want dst
	pc_ok --include keep.o --exclude '*.o' src dst2
	rm -r want
	cp -a src want
	rm want/file.o want/d/x.o
	dir_times_from src want
	same_tree want dst2
	pc_ok --exclude '*.o' --include keep.o src dst3
	rm want/keep.o
	dir_times_from src want
	same_tree want dst3
	printf '+ keep.o\n- *.o\n' >inc
	pc_ok --exclude-from inc src dst4
	rm -r want
	cp -a src want
	rm want/file.o want/d/x.o
	dir_times_from src want
	same_tree want dst4
	printf 'keep.o\n' >inc2
	pc_ok --include-from inc2 --exclude '*.o' src dst5
	same_tree want dst5
	bad=0
	usage_err "exclude-from.*no-such-file" --exclude-from no-such-file src dstX
	usage_err "include.*empty pattern" --include / src dstX
	[ "$bad" -eq 0 ]
}

# Filters match what rsync's do: for each pattern, --exclude PAT (x), or
# --include PAT --exclude '*' (i), copies the same entries as rsync -a
# with the same options.  Covers names, dot files, an inner '/' (trailing
# components at any depth), a leading '/' (anchored), "**" at the start,
# inside and at the end, "/***", '?', '[...]', '\' and directory-only
# patterns.
t_filters_rsync()
{
	have rsync || skip "rsync missing"
	for f in a/b/c x/a/b/f x/y/a/b/g a/b/d/e foo.o sub/foo.o deep/er/foo.o \
	    .hidden .dot/x.o sub/.dot.o proc/p sub/proc/q d/proc a/bb/c \
	    lib/x/y/z.so lib/z.so 'br[a]c/k' 'q?x' sub/cache/g m/n/o/p/q; do
		mkdir -p "src/$(dirname "$f")"
		echo "$f" >"src/$f"
	done
	mkdir -p src/empty/dir
	bad=0
	while read -r how pat; do
		rm -rf r p
		if [ "$how" = x ]; then
			set -- --exclude="$pat"
		else
			set -- --include="$pat" --exclude='*'
		fi
		rsync -a "$@" src/ r/ 2>rsync.err || fail "rsync -a $*: $(cat rsync.err)"
		pc -q "$@" src p
		want_rc 0 "pcopy $*"
		(cd r && find . -mindepth 1 -printf '%y %P\n' | sort) >r.list
		(cd p && find . -mindepth 1 -printf '%y %P\n' | sort) >p.list
		cmp -s r.list p.list && continue
		echo "$*: rsync (<) and pcopy (>) differ:"
		diff r.list p.list | grep '^[<>]' | head -n 5
		bad=$((bad + 1))
	done <<'PATS'
x *.o
x .*
x a/b
x /a/b
x */b
x a/*/c
x y/a/b
x n/o/p/
x proc/
x /proc/
x */proc/
x **/b
x a/**
x a/**/e
x **/foo.o
x /**/foo.o
x x/**/b
x lib/**/*.so
x lib/***
x */er/*
x ?.o
x br\[a\]c
x q\?x
x [[:alpha:]]
i .*
i [!a]*
i */
i lib/***
i /lib/***
i sub/***
PATS
	[ "$bad" -eq 0 ] || fail "$bad patterns differ from rsync's"
}

# -a and -r are accepted and change nothing (pcopy always archives).
t_archive_flags()
{
	mkdir -p src/d
	echo a >src/d/f
	ln -s d/f src/l
	pc_ok -a src dst
	same_tree src dst
	pc_ok -ar --recursive --archive src dst2
	same_tree src dst2
}

# SIGUSR1 names the file each worker is copying; the copy goes on.
t_sigusr1()
{
	mkdir -p src/big
	for n in 1 2 3 4; do
		head -c 104857600 /dev/zero >src/big/z$n
	done
	mk_split src/small 2 50 100
	pc_bg -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big/")
	if [ -z "$w" ]; then
		pc_wait
		same_tree src dst
		skip "never saw the worker copying src/big"
	fi
	at_exit "kill -CONT $w 2>/dev/null"
	kill -USR1 "$pid"
	i=0
	while ! grep -q "copying '" pc.err && [ $i -lt $((500 * tmul)) ]; do
		sleep 0.01
		i=$((i + 1))
	done
	kill -CONT "$w"
	pc_wait
	want_rc 0 "after SIGUSR1"
	grep -Eq "^pcopy: worker 1 pid $w: copying 'src/big/z[1-4]'" pc.err ||
	    fail "no 'worker 1 pid $w: copying 'src/big/...'' line:
$(head -n 5 pc.err)"
	same_tree src dst
}

# --progress to a file on a copy of several seconds: plain lines, about
# one a second, whose percentage never goes down.
t_progress_plain()
{
	mkdir -p src/big
	for n in 0 1 2 3 4 5 6 7 8 9; do
		head -c 67108864 /dev/zero >src/big/z$n
	done
	mk_split src/small 4 250 100
	pc_bg -j 1 --progress src dst
	stalls=0
	while [ $stalls -lt 2 ]; do     # stop the worker twice for 1.2 s
		w=$(stop_worker_on "$(pwd -P)/src/big/")
		[ -n "$w" ] || break
		at_exit "kill -CONT $w 2>/dev/null"
		sleep 1.2
		kill -CONT "$w"
		sleep 0.05
		stalls=$((stalls + 1))
	done
	pc_wait
	want_rc 0
	same_tree src dst
	! has_cr pc.err || fail "carriage return in --progress to a file"
	! grep -q "$(printf '\033')" pc.err || fail "escape sequence in --progress"
	grep -E '[0-9]+\.[0-9][0-9]%' pc.err >lines || :
	[ "$(wc -l <lines)" -ge 2 ] || fail "want 2 or more progress lines:
$(cat pc.err)"
	grep -v '^pcopy: ' pc.err && fail "lines without 'pcopy: '"
	grep -Eo '[0-9]+\.[0-9][0-9]%' lines | tr -d % | awk '
	$1 + 0 < last { print "percentage went down: " last " -> " $1; bad = 1 }
	{ last = $1 + 0 }
	END { exit bad }'
	tail -n 1 pc.err | grep -Eq '^pcopy: [0-9]+ files' ||
	    fail "last line is no summary: $(tail -n 1 pc.err)"
}

# --progress to a file backs off: a line every second for the first 20 s,
# then one every elapsed/20 (every 30 s at most), so a 12-hour copy logs
# about 1,500 lines, not 43,000.  strace holds the only copy call for 36 s,
# so the run lasts that long however fast the machine is; the lines are
# counted by their elapsed-time stamps (whole seconds).  It cannot be much
# shorter: the back-off begins at 20 s and takes some 15 s to show.
t_progress_log_backoff()
{
	no_valgrind "strace holds the binary's own system call"
	have strace || skip "strace missing"
	strace -f -qq -o /dev/null -e trace=none true 2>/dev/null ||
	    skip "strace cannot trace here"
	mkdir src
	echo a >src/f
	PC_TIMEOUT=120 PC_PREFIX="strace -f -qq -o /dev/null -e trace=copy_file_range
	    -e inject=copy_file_range:delay_enter=36000000" pc -j 1 --progress src dst
	want_rc 0
	same_tree src dst
	tail -n 1 pc.err | grep -Eq '^pcopy: 1 files' ||
	    fail "last line is no summary: $(tail -n 1 pc.err)"
	# one number per progress line: its stamp in seconds
	sed -n 's/^pcopy: \[\([0-9]*\):\([0-9]*\)\] [0-9]*\/[0-9]*.*/\1 \2/p' pc.err |
	    awk '{ print $1 * 60 + $2 }' >stamps
	last=$(tail -n 1 stamps)
	[ "${last:-0}" -ge 33 ] || skip "the copy was not held (no copy_file_range?): last line at ${last:-?} s"
	# before 20 s: about one a second (19 at most, 15 allowed for a slow
	# machine); from 20 s on each line waits elapsed/20 after the last,
	# so from the first line at t0 >= 19.5 s to the last at t1 there are
	# at most 1 + log(t1 / t0) / log(20 / 19) (13 here; 16 or 17 without
	# the back-off); and no gap is far longer than the rule says
	awk -v last="$last" '
	$1 < 20 { early++ }
	$1 >= 20 { if (!late++) first = $1 }
	NR > 1 && $1 - prev > (prev / 20 > 1 ? prev / 20 : 1) + 3 {
		print "a gap of " $1 - prev " s after the line at " prev " s"; bad = 1
	}
	{ prev = $1 }
	END {
		max = 1 + log((last + 0.5) / (first - 0.5)) / log(20 / 19)
		if (early < 15) { print early " lines before 20 s, want 15 or more"; bad = 1 }
		if (late > max) {
			printf "%d lines from %d s to %d s, want %d at most: no back-off\n",
			    late, first, last, max
			bad = 1
		}
		exit bad
	}' stamps || fail "stamps: $(tr '\n' ' ' <stamps)"
}

# mk_large FILE: 300 MiB of random data, with a mode and an mtime.
mk_large()
{
	head -c 314572800 /dev/urandom >"$1"
	chmod 0640 "$1"
	touch -d '2003-03-03 03:03:03.333333333' "$1"
}

# Large files, with one worker and with several (each file goes to one
# worker, whole).
t_large_files()
{
	mkdir src
	mk_large src/big
	echo small >src/small
	pc_ok -j 4 src dst4
	same_tree src dst4
	pc_ok -j 1 src dst1
	same_tree src dst1
}

# An entry that kills every worker that copies it: after three deaths it
# fails with a named error (exit 1) instead of looping, leaves nothing under
# its name, and everything else is copied.
t_killer_entry()
{
	mkdir src
	# 1 GiB: each retry must last long enough to be caught again on an
	# idle machine (256 MiB took 0.37 s, and the retry could finish first)
	head -c 1073741824 /dev/zero >src/big
	echo small >src/small
	pc_bg -j 1 src dst
	n=0
	while [ $n -lt 10 ]; do
		w=$(stop_worker_on "$(pwd -P)/src/big")
		[ -n "$w" ] || break
		kill -KILL "$w"
		n=$((n + 1))
		# a killed process keeps its files open for a moment: wait it out,
		# or the next look finds the same worker again
		i=0
		while alive "$w" && [ $i -lt 500 ]; do
			sleep 0.01
			i=$((i + 1))
		done
	done
	pc_wait
	want_rc 1 "after $n kills"
	[ "$n" -eq 3 ] || fail "the entry was retried after $n deaths, want 3: $(cat pc.err)"
	grep -q "src/big': a worker was killed 3 times while copying it; giving up\$" pc.err ||
	    fail "no 'killed 3 times' line naming src/big: $(head -n 8 pc.err)"
	[ ! -e dst/big ] || fail "dst/big exists"
	cmp src/small dst/small || fail "dst/small differs"
	no_procs_left 2
}

# A worker killed while it copies a large file: the file is copied again.
t_worker_killed_large()
{
	mkdir src
	mk_large src/big
	echo small >src/small
	pc_bg -j 4 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big")
	if [ -z "$w" ]; then
		pc_wait
		same_tree src dst
		skip "never saw a worker copying src/big"
	fi
	kill -KILL "$w"
	worker_killed_ok "$w"
}

# -- differential harness: pcopy against cp -aT on real file systems --
#
# A torture tree (mk_torture) is built on one file system and copied with
# `cp -aT' and with pcopy onto another, each into a DEST prepared the same
# way (mk_dest: a default ACL on the top, an existing directory owned by
# someone else with a stale ACL and xattr).  The two copies are compared
# with same_tree, attribute by attribute, plus allocated blocks; every
# difference must be one named in the case's list of expected differences
# (diff_expect), each with the reason pcopy differs on purpose.  Loop
# devices carry ext4, xfs and btrfs images of a few tens of MB (sparse
# files: they cost little real space); a case that cannot set one up is
# skipped.

# at_exit_first COMMAND: like at_exit, but run before the commands given so
# far (unmount before detaching the loop device, detach before removing
# the image).
at_exit_first()
{
	exit_cmds="$1$nl${exit_cmds:-}"
	trap 'set +e; eval "$exit_cmds"' EXIT
}

# fs_mount DIR TYPE [MKFS-OPTION...] [-- MOUNT-OPTIONS]: make a small file
# system of TYPE (ext4, xfs, btrfs or tmpfs) and mount it on DIR (created),
# unmounted and detached however the case ends.
fs_mount()
{
	fm_dir=$1 fm_type=$2
	shift 2
	fm_mkfs= fm_mopt=
	while [ $# -gt 0 ]; do
		if [ "$1" = -- ]; then
			fm_mopt=$2
			break
		fi
		fm_mkfs="$fm_mkfs $1"
		shift
	done
	is_root || skip "needs root to mount file systems"
	mkdir -p "$fm_dir"
	if [ "$fm_type" = tmpfs ]; then
		mount -t tmpfs -o "size=256m,noatime${fm_mopt:+,$fm_mopt}" tmpfs "$fm_dir" ||
		    skip "cannot mount tmpfs"
		at_exit_first "umount '$(pwd)/$fm_dir'"
		return 0
	fi
	[ -e /dev/loop-control ] || skip "no /dev/loop-control: no loop devices"
	have losetup || skip "losetup missing (util-linux)"
	have "mkfs.$fm_type" || skip "mkfs.$fm_type missing"
	fm_img=$(mktemp "${TMPDIR:-/tmp}/pcopy-fs.XXXXXX") || return 1
	at_exit_first "rm -f '$fm_img'"
	# xfs wants 300 MB at least; the others get what 200 MB of reflinks
	# and the torture tree need.  The images are sparse.
	truncate -s 300M "$fm_img"
	case $fm_type in
	ext4) fm_q="-q -F -b 4096" ;;  # (not 1 KiB for a small image, unless asked)
	xfs) fm_q="-q -f" ;;
	btrfs) fm_q="-q -f" ;;
	esac
	# shellcheck disable=SC2086 # option lists
	"mkfs.$fm_type" $fm_q $fm_mkfs "$fm_img" >mkfs.log 2>&1 ||
	    fail "mkfs.$fm_type$fm_mkfs failed: $(cat mkfs.log)"
	fm_dev=$(losetup --find --show "$fm_img" 2>losetup.log) ||
	    skip "cannot set up a loop device: $(cat losetup.log)"
	at_exit_first "losetup -d '$fm_dev'"
	# noatime: reading SOURCE (cp does, and the checks) must not move its
	# atimes, or on a file system with whole-second times the two copies'
	# atimes differ by the second the reads fell in
	mount -o "noatime${fm_mopt:+,$fm_mopt}" "$fm_dev" "$fm_dir" ||
	    fail "cannot mount $fm_type$fm_mkfs${fm_mopt:+ -o $fm_mopt}"
	at_exit_first "umount '$(pwd)/$fm_dir'"
}

# mk_torture DIR: the torture tree, as root.  Every line is a case of
# issue 9 or of the fidelity cases above; each must hold on every file
# system the harness uses as a source (tmpfs, ext4, xfs, btrfs).  Not in
# it, on purpose: paths beyond PATH_MAX (t_long_path; cp -a fails on them)
# and more hard links than DEST allows (t_emlink; 65,000 links take long).
mk_torture()
{
	mt=$1
	mkdir -p "$mt/d/sub" "$mt/links" "$mt/special" "$mt/sparse" "$mt/acl/inner" \
	    "$mt/x/ro" "$mt/sticky" "$mt/merge"
	: >"$mt/empty"
	echo hello >"$mt/small"
	head -c 300000 /dev/urandom >"$mt/d/rand"
	# modes, set-uid/gid, sticky; owners
	for m in 0644 0600 0444 0400 0000 4755 2755 6755 1755 0705; do
		echo "$m" >"$mt/m$m"
		chmod "$m" "$mt/m$m"
	done
	chmod 1777 "$mt/sticky"
	chmod 2775 "$mt/d"
	echo o >"$mt/own"
	chown 1234:5678 "$mt/own"
	echo s >"$mt/suid_other"
	chown 1234:1234 "$mt/suid_other"
	chmod 6755 "$mt/suid_other"
	chown 4321:4321 "$mt/d/sub"
	# symlinks, one with another owner; hard links across directories
	ln -s ../small "$mt/links/rel"
	ln -s /etc/passwd "$mt/links/abs"
	ln -s nowhere "$mt/links/dangling"
	ln -s "$(long_name 1000 t)" "$mt/links/long"
	chown -h 1234:5678 "$mt/links/rel"
	ln "$mt/small" "$mt/links/hard_small"
	ln "$mt/d/rand" "$mt/d/sub/hard_rand"
	# FIFOs (one hard-linked), devices, a socket
	mkfifo "$mt/special/fifo"
	chmod 0620 "$mt/special/fifo"
	ln "$mt/special/fifo" "$mt/special/fifo_link"
	mknod "$mt/special/null" c 1 3
	mknod "$mt/special/loop" b 7 200
	chown 0:6 "$mt/special/loop"
	chmod 0660 "$mt/special/loop"
	if have perl; then
		perl -MSocket -e 'socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "$!";
		    bind($s, pack_sockaddr_un($ARGV[0])) or die "$!"' "$mt/special/sock"
	fi
	# holes: trailing, leading, nothing but a hole; and item 10: a
	# sparse file with a range of written zeros and a preallocated range
	truncate -s 8M "$mt/sparse/tail"
	dd if=/dev/urandom of="$mt/sparse/tail" bs=64K count=4 seek=16 \
	    conv=notrunc iflag=fullblock status=none
	truncate -s 4M "$mt/sparse/lead"
	dd if=/dev/urandom of="$mt/sparse/lead" bs=64K count=1 seek=63 \
	    conv=notrunc iflag=fullblock status=none
	truncate -s 16M "$mt/sparse/hole"
	truncate -s 3M "$mt/sparse/odd"         # data in a last, partial block
	printf 'odd tail' >>"$mt/sparse/odd"
	truncate -s 16M "$mt/sparse/zeros"
	dd if=/dev/urandom of="$mt/sparse/zeros" bs=64K count=1 \
	    conv=notrunc iflag=fullblock status=none
	dd if=/dev/zero of="$mt/sparse/zeros" bs=1M count=4 seek=4 \
	    conv=notrunc iflag=fullblock status=none
	truncate -s 16M "$mt/sparse/prealloc"
	dd if=/dev/urandom of="$mt/sparse/prealloc" bs=64K count=1 \
	    conv=notrunc iflag=fullblock status=none
	fallocate -o 4M -l 4M "$mt/sparse/prealloc"
	# xattrs in every namespace, on every type of entry
	setfattr -n user.text -v hello "$mt/small"
	setfattr -n user.bin -v 0x00ff00fe01 "$mt/small"
	setfattr -n user.empty "$mt/small"
	setfattr -n user.big -v "$(long_name 3000 v)" "$mt/d/rand"
	setfattr -n user.dir -v dirval "$mt/d"
	setfattr -n user.top -v topval "$mt"
	setfattr -n trusted.t -v tval "$mt/small"
	setfattr -n trusted.d -v dval "$mt/d/sub"
	setfattr -n security.pcopy -v sval "$mt/d/rand"
	setfattr -h -n trusted.link -v lval "$mt/links/rel"
	setfattr -h -n security.link -v lsec "$mt/links/abs"
	setfattr -n trusted.fifo -v fval "$mt/special/fifo"
	setfattr -n trusted.dev -v dval "$mt/special/null"
	setfattr -n security.dev -v dsec "$mt/special/loop"
	printf '#!/bin/sh\n' >"$mt/cap"
	chmod 0755 "$mt/cap"
	setcap cap_net_raw+ep "$mt/cap"
	# read-only entries with xattrs (item 3 as non-root: see t_diff_nobody)
	echo ro >"$mt/x/ro/file"
	setfattr -n user.ro -v 1 "$mt/x/ro/file"
	chmod 0444 "$mt/x/ro/file"
	setfattr -n user.rodir -v 1 "$mt/x/ro"
	chmod 0555 "$mt/x/ro"
	# ACLs: access and default, on files, directories, a device, a FIFO
	echo a >"$mt/acl/f"
	setfacl -m u:1234:rw,g:5678:r "$mt/acl/f"
	setfacl -m u:1234:rwx,d:u:1234:rx,d:g::r "$mt/acl"
	setfacl -k "$mt/acl/inner"
	setfacl -m g:6:rw "$mt/special/loop"
	setfacl -m u:1234:r "$mt/special/fifo"
	# item 6/7: SOURCE's merge/ is root's, plain 0750, no ACL, no xattr
	chmod 0750 "$mt/merge"
	echo m >"$mt/merge/f"
	# times last, deepest first: nanoseconds, before 1970, after 2038
	find "$mt" -depth -exec touch -h -d '2009-02-13 23:31:30.123456789' {} +
	touch -d '1969-07-20 20:17:40.5' "$mt/m0644"
	touch -d '2100-01-01 00:00:00.000000001' "$mt/m0600"
	touch -h -d '1999-12-31 23:59:59.999999999' "$mt/links/long"
	touch -d '2001-01-01 00:00:01.25' "$mt/special/fifo" "$mt/d"
}

# mk_dest DIR: the DEST both copies go into: a default ACL on the top
# (item 4: new entries must not inherit it), and merge/, an existing
# directory owned by 1234:1234 with an ACL, a default ACL and an xattr
# SOURCE's merge/ lacks (items 6 and 7).
mk_dest()
{
	mkdir -p "$1/merge"
	chown 1234:1234 "$1" "$1/merge"
	chmod 0777 "$1/merge"
	setfattr -n user.stale -v 1 "$1/merge"
	[ -z "${dc_noacl:-}" ] || return 0
	setfacl -m d:u:1234:rwx,d:o::r "$1"
	setfacl -m u:1234:rwx,d:u:1234:rwx "$1/merge"
}

# diff_expect SIDE PATH TEXT REASON: before diff_run, allow one difference:
# the manifest line of PATH containing TEXT, only in cp's copy (SIDE <) or
# only in pcopy's (SIDE >).  REASON says why pcopy differs on purpose; it
# is printed with the difference.
diff_expect()
{
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>expect
}

# dr_rc="CP PCOPY" and dr_rc_why=REASON, set before diff_run: the exit
# statuses may differ so, for that reason.
#
# diff_run SRC DSTFS [PCOPY-OPTION...]: copy SRC into DSTFS/cp with cp -aT
# and into DSTFS/pc with pcopy, each prepared by mk_dest, and compare:
# exit statuses, then every attribute of every entry (same_tree's
# manifest, and atimes), then allocated blocks (pcopy's copy may not
# allocate more than cp's but 64 KiB + 1/64).  Any difference not allowed by diff_expect
# fails the case.
diff_run()
{
	dr_src=$1 dr_dst=$2
	shift 2
	mk_dest "$dr_dst/cp"
	mk_dest "$dr_dst/pc"
	# pcopy first: it leaves SOURCE's atimes alone (O_NOATIME), cp
	# does not; both copies must get SOURCE's atimes.  But reading a
	# symlink sets its atime, for both: those are put back for cp.
	(cd "$dr_src" && find . -type l -printf '%A@ %p\0') >latime
	(cd "$dr_src" && find . ! -type l -printf '%p %A@\n' | sort) >satime.0
	pc "$@" "$dr_src" "$dr_dst/pc"
	(cd "$dr_src" && find . ! -type l -printf '%p %A@\n' | sort) >satime.1
	(cd "$dr_src" && xargs -0 -r -n 1 sh -c \
	    'touch -h -a -d "@${0%% *}" -- "${0#* }"') <latime
	dr_cprc=0
	cp -aT "$dr_src" "$dr_dst/cp" 2>cp.err || dr_cprc=$?
	for dr_x in cp pc; do     # before anything reads them
		(cd "$dr_dst/$dr_x" && find . -printf '%p %A@\n' | sort) >"atime.$dr_x"
	done
	: >>expect
	manifest "$dr_dst/cp" man.cp || return 1
	manifest "$dr_dst/pc" man.pc || return 1
	diff man.cp man.pc | grep '^[<>]' >man.diff || :
	awk -F '\t' '
	FILENAME == ARGV[1] { side[NR] = $1; path[NR] = $2; text[NR] = $3
		why[NR] = $4; n = NR; next }
	{
		s = substr($0, 1, 1); p = substr($1, 3); line = substr($0, 3)
		for (i = 1; i <= n; i++)
			if (s == side[i] && p == path[i] && index(line, text[i])) {
				printf "note: %s %s: %s\n", s == "<" ? "cp" : "pcopy", \
				    p, why[i]
				used[i] = 1
				next
			}
		print "unexplained: " $0
		bad = 1
	}
	END {
		for (i = 1; i <= n; i++)
			if (!used[i])
				printf "expected difference did not show: %s %s %s\n", \
				    side[i], path[i], text[i]
	}' expect man.diff >diff.report
	awk -F '\t' '
	FILENAME == ARGV[1] { split($2, m, " "); b[$1] = m[8]; next }
	{
		split($2, m, " ")
		if (m[1] != "f" || !($1 in b) || m[8] <= b[$1] + 128 + b[$1] / 64)
			next
		printf "blocks: %s allocates %d KiB, cp'"'"'s copy %d KiB\n", \
		    $1, m[8] / 2, b[$1] / 2
	}' man.cp.raw man.pc.raw >>diff.report
	diff atime.cp atime.pc | grep '^[<>]' | sed 's/^/atime: /' >>diff.report
	# pcopy better than cp: reading SOURCE leaves its atimes (O_NOATIME)
	diff satime.0 satime.1 | grep '^[<>]' |
	    sed 's/^/pcopy changed an atime in SOURCE: /' >>diff.report
	if [ "$dr_cprc $rc" = "${dr_rc:-}" ]; then
		echo "note: exit status cp $dr_cprc, pcopy $rc: $dr_rc_why" >>diff.report
	elif [ "$dr_cprc" -ne "$rc" ]; then
		echo "exit status: cp $dr_cprc, pcopy $rc" >>diff.report
	fi
	if grep -qv '^note: ' diff.report; then
		echo "pcopy and cp -aT differ ($dr_src -> $dr_dst):"
		cat diff.report
		echo "cp's stderr:"
		head -n 10 cp.err
		echo "pcopy's stderr:"
		head -n 10 pc.err
		return 1
	fi
}

# diff_case SRCFS DSTFS: torture tree on a fresh SRCFS, copied onto a fresh
# DSTFS (each "TYPE [MKFS-OPTION...] [-- MOUNT-OPTIONS]"; "same" for DSTFS:
# within SRCFS).
diff_case()
{
	have setfattr && have setfacl && have setcap && have fallocate ||
	    skip "setfattr, setfacl, setcap or fallocate missing (attr, acl, libcap2-bin, util-linux)"
	# shellcheck disable=SC2086 # a type and its options
	fs_mount s $1
	if [ "$2" = same ]; then
		dc_dst=s
	else
		# shellcheck disable=SC2086
		fs_mount dfs $2
		dc_dst=dfs
	fi
	mkdir s/tree
	mk_torture s/tree
	diff_expect '<' merge 'xattr user.stale=' \
	    "cp -a keeps an xattr SOURCE lacks on a directory it merges into; pcopy removes it (issue 9 item 7)"
	diff_run s/tree "$dc_dst"
}

t_diff_tmpfs()
{
	diff_case tmpfs same
}
t_diff_ext4()
{
	diff_case ext4 same
}
t_diff_ext4_128()
{
	diff_case "ext4 -I 128" same
}
t_diff_ext4_inline()
{
	diff_case "ext4 -O inline_data" same
}
t_diff_xfs()
{
	diff_case "xfs -m reflink=1" same
}
t_diff_btrfs()
{
	diff_case btrfs same
}
t_diff_tmpfs_ext4()
{
	diff_case tmpfs ext4
}
t_diff_ext4_xfs()
{
	diff_case ext4 "xfs -m reflink=1"
}
t_diff_xfs_btrfs()
{
	diff_case "xfs -m reflink=1" btrfs
}

# Item 2: DEST refuses ACLs.  Each ACL is lost alone, and named; every other
# xattr (user.*, security.capability) stays, on every later file too.
# An xattr DEST has no room for (3 KiB on ext4 with 1 KiB blocks): cp -a
# drops it silently, exit 0; pcopy names it, exit 1.
t_diff_ext4_1k()
{
	dr_rc="0 1"
	dr_rc_why="cp -a is silent about the xattr DEST has no room for; pcopy names it"
	diff_case tmpfs "ext4 -b 1024"
	grep -q "^pcopy: 'dfs/pc/d/[a-z_/]*rand': extended attribute 'user.big' not copied: No space left on device" pc.err ||
	    fail "the lost xattr was not named: $(cat pc.err)"
	[ ! -s cp.err ] || fail "cp -a named it: the case is wrong: $(cat cp.err)"
}

t_diff_btrfs_noacl()
{
	dc_noacl=1
	diff_case tmpfs "btrfs -- noacl"
	for f in acl/f special/fifo special/loop; do
		grep -q "dfs/pc/$f[a-z_]*'.*system.posix_acl_access.*not copied: .*ot supported" pc.err ||
		    fail "the lost ACL of $f was not named: $(cat pc.err)"
	done
	want_rc 1
}

# Items 1 and 12: files whose size is not their content (/sys: a page;
# /proc: SEEK_DATA refused) are copied as read, like cp: never padded,
# never failed.
t_pseudo_files()
{
	n=0
	for f in /sys/kernel/mm/transparent_hugepage/enabled /proc/cmdline \
	    /proc/bus/pci/00/00.0; do
		[ -r "$f" ] || continue
		n=$((n + 1))
		cat "$f" >want$n || continue
		pc_ok "$f" got$n
		cmp want$n got$n || fail "copy of $f differs from its content: $(stat -c %s got$n) bytes, want $(stat -c %s want$n)"
	done
	[ "$n" -gt 0 ] || skip "none of the /sys and /proc files here"
}

# Item 9: a sparse file truncated while it is copied is copied as read and
# named, exit 1 -- never padded back to the size the walk saw.
t_sparse_shrink()
{
	mkdir src
	truncate -s 300M src/sp
	dd if=/dev/urandom of=src/sp bs=1M count=256 conv=notrunc \
	    iflag=fullblock status=none
	[ "$(stat -c %b src/sp)" -lt 614400 ] || skip "no holes on this file system"
	pc_bg -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/sp")
	if [ -z "$w" ]; then
		pc_wait
		skip "never saw the worker copying src/sp"
	fi
	truncate -s 1M src/sp
	kill -CONT "$w"
	pc_wait
	want_rc 1
	grep -q "^pcopy: 'src/sp': changed size while being copied" pc.err ||
	    fail "src/sp not reported as changed: $(head -n 5 pc.err)"
	sz=$(stat -c %s dst/sp)
	[ "$sz" -lt 314572800 ] || fail "dst/sp was padded back to 300 MiB"
	cmp -n 1048576 src/sp dst/sp || fail "dst/sp does not start as src/sp"
}

# Item 10: zero-filled and preallocated ranges of a sparse file become
# holes, as with cp --sparse=auto.
t_sparse_zeros()
{
	have fallocate || skip "fallocate missing (util-linux)"
	mkdir src
	truncate -s 16M src/zeros src/prealloc
	dd if=/dev/urandom of=src/zeros bs=64K count=1 conv=notrunc status=none
	dd if=/dev/zero of=src/zeros bs=1M count=4 seek=4 conv=notrunc status=none
	dd if=/dev/urandom of=src/prealloc bs=64K count=1 conv=notrunc status=none
	fallocate -o 4M -l 4M src/prealloc ||
	    skip "fallocate refused on this file system"
	pc_ok src dst
	same_tree src dst
	for f in zeros prealloc; do
		b=$(stat -c %b "dst/$f")
		[ "$b" -le 1024 ] ||
		    fail "dst/$f allocates $((b / 2)) KiB: its zeros were written"
	done
}

# Item 11: root without CAP_CHOWN: each file is copied with its data,
# times and the owner's mode bits (cp's narrowing), its lost ownership
# named, exit 1.
t_no_cap_chown()
{
	is_root || skip "needs root"
	have setpriv || skip "setpriv missing"
	setpriv --bounding-set=-chown true 2>/dev/null ||
	    skip "setpriv cannot drop CAP_CHOWN"
	mkdir -p src/d
	echo a >src/f
	echo b >src/d/g
	chown 1234:1234 src/f src/d
	chmod 4755 src/f
	touch -d '2001-01-01 01:01:01.5' src/f src/d/g src/d
	PC_PREFIX="setpriv --bounding-set=-chown --" pc src dst
	want_rc 1
	for f in f d; do
		grep -q "^pcopy: 'dst/$f': failed to preserve ownership" pc.err ||
		    fail "dst/$f not named: $(cat pc.err)"
	done
	cmp src/f dst/f && cmp src/d/g dst/d/g || fail "data not copied"
	[ "$(stat -c '%a %u %.9Y' dst/f)" = "700 0 978310861.500000000" ] ||
	    fail "dst/f: $(stat -c '%a %u %.9Y' dst/f), want 700 0 978310861.500000000"
	[ "$(stat -c '%.9Y' dst/d)" = 978310861.500000000 ] || fail "dst/d lost its mtime"
}

# Item 15: -u onto a file system that keeps whole seconds (ext4 with
# 128-byte inodes) copies nothing the second time.
t_update_coarse()
{
	fs_mount m ext4 -I 128
	mk_files src 2 5
	find src -exec touch -d '2001-01-01 01:01:01.75' {} +
	pc_ok src m/dst
	pc_ok -u src m/dst
	grep -Eq '^pcopy: 0 files, .*, 10 skipped' pc.err ||
	    fail "want 0 files copied, 10 skipped: $(cat pc.err)"
	touch -d '2001-01-01 01:01:02.25' src/d0/f0
	pc_ok -u src m/dst
	grep -Eq '^pcopy: 1 files, .*, 9 skipped' pc.err ||
	    fail "a newer file was not copied: $(cat pc.err)"
}

# Item 3: as non-root, read-only files and directories keep their user.*
# xattrs, as with cp -a.
t_diff_nobody()
{
	have setfattr || skip "setfattr missing (attr)"
	as_nobody
	mkdir -p src/ro src/rw
	echo a >src/ro/f
	echo b >src/rw/g
	setfattr -n user.a -v 1 src/ro/f 2>/dev/null || skip "no user.* xattrs here"
	setfattr -n user.b -v 2 src/ro
	setfattr -n user.c -v 3 src/rw/g
	chmod 0444 src/ro/f
	chmod 0400 src/rw/g
	chmod 0555 src/ro
	[ -z "$runas" ] || chown -R 65534:65534 src
	$runas cp -aT src cpdst
	pc_ok src pcdst         # (as nobody: pc runs pcopy under $runas)
	same_tree cpdst pcdst
	same_tree src pcdst
}

# As non-root, a file capability cannot be set: cp -a drops it silently,
# pcopy names it (exit 1) and copies the rest.
t_nobody_capability()
{
	is_root || skip "needs root to give the source a capability"
	have setcap || skip "setcap missing (libcap2-bin)"
	as_nobody
	mkdir src
	printf '#!/bin/sh\n' >src/cap
	echo b >src/other
	chmod 0755 src/cap
	chown -R 65534:65534 src        # (before setcap: chown clears it)
	setcap cap_net_raw+ep src/cap 2>/dev/null || skip "no capabilities here"
	pc src dst              # (as nobody: pc runs pcopy under $runas)
	want_rc 1
	grep -q "^pcopy: 'dst/cap': extended attribute 'security.capability' not copied: Operation not permitted" pc.err ||
	    fail "the lost capability was not named: $(cat pc.err)"
	cmp src/cap dst/cap && cmp src/other dst/other || fail "data not copied"
}

# Item 4: a default ACL on DEST is not inherited by what pcopy writes, on
# a first run, a -u re-run and shard runs: exact modes, no ACL entries.
t_dest_default_acl()
{
	have setfacl && have getfattr || skip "setfacl or getfattr missing"
	mkdir -p src/d dst
	echo a >src/f
	echo b >src/d/g
	mkfifo src/d/p
	chmod 0644 src/f
	chmod 0751 src/d
	setfacl -m d:u:65534:rwx,d:g::rwx,d:o::rwx dst 2>/dev/null ||
	    skip "no ACLs here"
	for run in first update shard; do
		case $run in
		first) pc_ok src dst ;;
		update)
			rm -rf dst/d
			pc_ok -u src dst ;;
		shard)
			rm -rf dst/d dst/f
			pc_ok --shard 1/2 src dst
			pc_ok --shard 2/2 src dst
			pc_ok -u src dst ;;
		esac
		setfacl -k -b dst       # DEST's top: not SOURCE's
		touch -r src dst
		same_tree src dst || fail "after the $run run"
		setfacl -m d:u:65534:rwx,d:g::rwx,d:o::rwx dst
	done
}

# A single file copied into a directory with a default ACL loses the ACL
# entries it would inherit and SOURCE lacks, as cp -a's copy does (FILE
# DEST and FILE DIR/ alike); it kept them once, 0640 shown as 0640 while
# uid 65534 could read it.
t_single_file_dacl()
{
	have setfacl && have getfacl || skip "setfacl or getfacl missing"
	mkdir -p dcp dpc dpc2
	echo a >f
	chmod 0640 f
	for d in dcp dpc dpc2; do
		setfacl -m d:u:65534:rwx,d:g::rwx,d:o::rwx $d 2>/dev/null ||
		    skip "no ACLs here"
	done
	cp -a f dcp/f
	pc_ok f dpc/f
	pc_ok f dpc2/
	getfacl -c dcp/f >want
	for g in dpc/f dpc2/f; do
		getfacl -c $g >got
		cmp -s want got || fail "$g: ACL unlike cp -a's:
$(diff want got)"
		[ "$(stat -c %a $g)" = 640 ] || fail "$g: mode $(stat -c %a $g)"
	done
}

# Item 8, on kernels without the *xattrat calls (before 6.13): xattrs of
# symlinks and special files go through /proc/self/fd; without /proc each
# one is named as not copied.
t_xattr_nodes_fallback()
{
	is_root || skip "needs root (trusted.* xattrs)"
	have setfattr || skip "setfattr missing (attr)"
	mkdir src
	ln -s nowhere src/l
	mkfifo src/p
	setfattr -h -n trusted.l -v 1 src/l 2>/dev/null || skip "no trusted.* xattrs here"
	setfattr -n trusted.p -v 2 src/p
	PCOPY_NO_XATTRAT=1 pc_ok src dst
	same_tree src dst
	have unshare || skip "unshare missing: no test without /proc"
	unshare -m true 2>/dev/null || skip "cannot unshare the mount namespace"
	! qemu_lacks_fchmodat2 ||
	    skip "this qemu-user lacks fchmodat2 (Linux 6.6): a FIFO's mode goes through /proc/self/fd, which the case takes away"
	rc=0
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	PCOPY_NO_XATTRAT=1 unshare -m sh -c 'umount -l /proc && exec "$@"' sh \
	    $qemu "$PCOPY" src dst2 2>pc.err || rc=$?
	want_rc 1 "without /proc"
	grep -q "^pcopy: 'dst2/l': extended attributes* .*not copied" pc.err &&
	    grep -q "^pcopy: 'dst2/p': extended attributes* .*not copied" pc.err ||
	    fail "without /proc: lost xattrs not named: $(cat pc.err)"
}

# Reflinks stay: a 200 MB copy within btrfs or xfs shares its extents
# (copy_file_range clones there), so it costs no space.
reflink_case()
{
	fs_mount m "$@"
	mkdir m/src
	head -c 209715200 /dev/urandom >m/src/big
	sync
	before=$(df -k --output=used m | tail -n 1)
	pc_ok m/src m/dst
	sync
	after=$(df -k --output=used m | tail -n 1)
	cmp m/src/big m/dst/big || fail "copy differs"
	[ $((after - before)) -lt 20480 ] ||
	    fail "the copy took $((after - before)) KiB: its extents are not shared"
	if have filefrag; then
		filefrag -v m/dst/big >ff
		grep -q shared ff || fail "filefrag shows no shared extent: $(head -n 8 ff)"
	fi
}

t_reflink_btrfs()
{
	reflink_case btrfs
}
t_reflink_xfs()
{
	reflink_case xfs -m reflink=1
}


# -- the progress line, rendered on a pseudo-terminal --

# pty_bg COLUMNS ARG...: like pc_bg, but pcopy runs on a pseudo-terminal
# of script(1), COLUMNS wide; all it writes goes to tty.out, the terminal's
# name to pc.tty.  $pid is pcopy's pid; pty_wait waits for it.
pty_bg()
{
	have script || skip "script (util-linux) missing"
	have ps && have pgrep || skip "ps or pgrep missing (procps)"
	case $PCOPY$PCOPY_WRAP$* in *"'"*) skip "a quote in the command" ;; esac
	pb_cols=$1
	shift
	bg_n=$((${bg_n:-0} + 1))
	tag=pcopy-test.$$.${PWD##*/}.$bg_n.
	at_exit "kill_tagged $tag"
	rm -f pc.pid
	# shellcheck disable=SC2086 # PCOPY_WRAP is a command and its arguments
	timeout -k 5 $((${PC_TIMEOUT:-60} * tmul)) env "PCOPY_TEST_TAG=$tag" \
	    script -qec "stty cols $pb_cols rows 24; tty >pc.tty; echo \$\$ >pc.pid.new &&
		mv pc.pid.new pc.pid; exec nice -n 10 $PCOPY_WRAP '$PCOPY' $*" /dev/null \
	    </dev/null >tty.out 2>&1 &
	bg=$!
	i=0
	while [ ! -s pc.pid ] && [ $i -lt $((1000 * tmul)) ] && alive "$bg"; do
		sleep 0.01
		i=$((i + 1))
	done
	pid=$(cat pc.pid 2>/dev/null) || :
	[ -n "$pid" ] || { pty_wait; fail "pcopy on a pty did not start: $(head -c 300 tty.out)"; }
}

# pty_wait: wait for the run of pty_bg; its exit status goes to $rc.
pty_wait()
{
	rc=0
	wait "$bg" || rc=$?
	[ "$rc" -ne 124 ] || echo "pcopy hung: killed by timeout"
	wrap_check tty.out
}

# pty_last: the progress line on the screen now (the last one drawn).
pty_last()
{
	tail -c 2000 tty.out | tr '\r' '\n' | sed 's/ *$//' | grep -v '^$' | tail -n 1
}

# fields_ok WIDTH LINE...: each line fits in WIDTH columns and is made of
# whole fields, two spaces apart: "N/M[+][ files]", "[~]NN.NN%" or "[~]NN%"
# or "scanning", "X unit/[~]Y unit[+]", "X unit/s", "ETA [>]M:SS" or "ETA ?".
fields_ok()
{
	fo_w=$1
	shift
	printf '%s\n' "$@" | awk -v w="$fo_w" '
	length($0) > w { print "wider than " w ": " $0; bad = 1; next }
	{
		n = split($0, f, "  ")
		for (i = 1; i <= n; i++)
			if (f[i] !~ /^[0-9]+\/[0-9]+\+?( files)?$/ &&
			    f[i] !~ /^(~?[0-9]+(\.[0-9][0-9])?%|scanning)$/ &&
			    f[i] !~ /^[0-9.]+ [kMGTP]?B\/~?[0-9.]+ [kMGTP]?B\+?$/ &&
			    f[i] !~ /^[0-9.]+ [kMGTP]?B\/s$/ &&
			    f[i] !~ /^ETA (>?[0-9:]+|\?)$/) {
				print "field \"" f[i] "\" cut or unknown in: " $0
				bad = 1
			}
	}
	END { exit bad }'
}

# step_until W FILE PERCENT: worker W is stopped with FILE open; let it run
# in slices of a few ms until it has read PERCENT of FILE, and leave it
# stopped.  Returns 1 if the file was closed first (the copy ran past).
step_until()
{
	su_fd=$(find "/proc/$1/fd" -lname "$2" -print 2>/dev/null | head -n 1)
	[ -n "$su_fd" ] || return 1
	su_want=$(($(stat -c %s "$2") / 100 * $3))
	su_i=0
	while [ $su_i -lt 2000 ]; do
		su_pos=$(awk '/^pos:/ { print $2 }' "/proc/$1/fdinfo/${su_fd##*/}" 2>/dev/null) || return 1
		[ -n "$su_pos" ] || return 1
		[ "$(readlink "$su_fd" 2>/dev/null)" = "$2" ] || return 1
		[ "$su_pos" -lt "$su_want" ] || return 0
		kill -CONT "$1"
		sleep 0.002
		kill -STOP "$1"
		su_i=$((su_i + 1))
	done
	return 1
}

# mk_one_big: src/big, 1 GiB of data (long enough to catch its worker on
# an idle machine), and src/sparse, a 1 GiB file holding 1 MiB of data.
# Skips where holes are not kept.
mk_one_big()
{
	mkdir src
	head -c 1073741824 /dev/zero >src/big
	truncate -s 1G src/sparse
	dd if=/dev/zero of=src/sparse bs=1M count=1 seek=100 conv=notrunc status=none
	[ "$(stat -c %b src/sparse)" -lt 4096 ] || skip "no holes in files here"
}

# One large file: the percentage follows its bytes (past 50% when more than
# half is copied, where it used to be the mean of 0/1 files and the byte
# fraction), there is an ETA (it used to say "?" until a file was done),
# and the total counts the data of the sparse file, not its 1 GiB size.
t_progress_one_file()
{
	mk_one_big
	pty_bg 200 -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big")
	[ -n "$w" ] || { pty_wait; skip "never saw the worker copying src/big"; }
	at_exit "kill -CONT $w 2>/dev/null"
	if ! step_until "$w" "$(pwd -P)/src/big" 60; then
		kill -CONT "$w"
		pty_wait
		skip "could not stop the worker in the middle of src/big"
	fi
	sleep 0.7                       # the parent draws the line a few times
	line=$(pty_last)
	kill -CONT "$w"
	pty_wait
	want_rc 0 "" tty.out
	same_tree src dst
	pct=$(printf '%s\n' "$line" | grep -Eo '[0-9]+\.[0-9][0-9]%' | tr -d %)
	[ -n "$pct" ] || fail "no percentage in: $line"
	awk -v p="$pct" 'BEGIN { exit !(p >= 50) }' ||
	    fail "60% of the only large file read, the line says $pct%: $line"
	printf '%s\n' "$line" | grep -Eq 'ETA [0-9]+:[0-9][0-9]' ||
	    fail "no ETA while the large file is copied: $line"
	printf '%s\n' "$line" | grep -Eq '/1\.1 GB( |$)' ||
	    fail "total should be 1.1 GB (1 GiB + the sparse file's 1 MiB, not 2.1 GB): $line"
	fields_ok 199 "$line" || fail "malformed line"
}

# A narrow terminal: fields are dropped or shortened, least important first,
# never cut; the percentage and the ETA stay at 40 columns.  After the
# terminal shrinks to 24 columns (SIGWINCH), lines fit the new width.
t_progress_narrow()
{
	mk_one_big
	pty_bg 40 -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big")
	[ -n "$w" ] || { pty_wait; skip "never saw the worker copying src/big"; }
	at_exit "kill -CONT $w 2>/dev/null"
	if ! step_until "$w" "$(pwd -P)/src/big" 30; then
		kill -CONT "$w"
		pty_wait
		skip "could not stop the worker in the middle of src/big"
	fi
	sleep 0.7
	line40=$(pty_last)
	stty -F "$(cat pc.tty)" cols 24 || { kill -CONT "$w"; pty_wait; skip "cannot resize the pty"; }
	mark=$(wc -c <tty.out)
	sleep 0.5
	line24=$(tail -c +$((mark + 1)) tty.out | tr '\r' '\n' | sed 's/ *$//' | grep -v '^$' | tail -n 1)
	kill -CONT "$w"
	pty_wait
	want_rc 0 "" tty.out
	same_tree src dst
	fields_ok 39 "$line40" || fail "at 40 columns"
	printf '%s\n' "$line40" | grep -Eq '[0-9]%  (.*  )?ETA [0-9]' ||
	    fail "at 40 columns the percentage and ETA should stay: $line40"
	[ -n "$line24" ] || fail "nothing drawn after the resize"
	fields_ok 23 "$line24" || fail "after shrinking to 24 columns"
}

# While the totals are still counted the line says "scanning" (and "+");
# to a file, a line says when the count is complete, and every line has
# the elapsed time.  --files-from has no census: the totals grow with the
# list, which waits while the queue is full (a large file holds the worker;
# 300 directories make 300 jobs).
t_progress_scanning()
{
	mkdir -p src/b
	head -c 1073741824 /dev/zero >src/b/big
	echo b/big >list
	i=0
	while [ $i -lt 300 ]; do
		mkdir src/d$i
		echo $i >src/d$i/f
		echo d$i/f
		i=$((i + 1))
	done >>list
	pty_bg 200 -j 1 --files-from=list src dst
	w=$(stop_worker_on "$(pwd -P)/src/b/big")
	[ -n "$w" ] || { pty_wait; skip "never saw the worker copying"; }
	at_exit "kill -CONT $w 2>/dev/null"
	sleep 0.5
	line=$(pty_last)
	kill -CONT "$w"
	pty_wait
	want_rc 0 "" tty.out
	printf '%s\n' "$line" | grep -q 'scanning' || fail "no 'scanning' while counting: $line"
	printf '%s\n' "$line" | grep -Eq '[0-9]+/[0-9]+\+ files' || fail "no '+' on the count: $line"
	fields_ok 199 "$line" || fail "malformed line"
	rm -rf dst
	pc_bg -j 1 --progress --files-from=list src dst
	w=$(stop_worker_on "$(pwd -P)/src/b/big")
	[ -n "$w" ] || { pc_wait; skip "never saw the worker copying"; }
	sleep 1.2
	kill -CONT "$w"
	pc_wait
	want_rc 0
	grep -Eq '^pcopy: \[0:0[0-9]\] [0-9]+/[0-9]+\+ files  scanning' pc.err ||
	    fail "no 'scanning' line with the elapsed time: $(head -n 5 pc.err)"
	grep -Eq '^pcopy: \[0:0[0-9]\] counted: 301 files, ' pc.err ||
	    fail "no line saying the count is complete: $(cat pc.err)"
	grep -v '^pcopy: \[[0-9:]*\] ' pc.err | grep -qv '^pcopy: 301 files' &&
	    fail "a line without the elapsed time: $(cat pc.err)"
	:
}

# -v on the terminal: the progress line is cleared before a name is printed
# (it used to read "... ETA 0:01big").
t_progress_verbose_tty()
{
	mkdir src
	head -c 1073741824 /dev/zero >src/big
	echo a >src/small
	pty_bg 200 -v -j 1 src dst
	w=$(stop_worker_on "$(pwd -P)/src/big")
	[ -n "$w" ] || { pty_wait; skip "never saw the worker copying src/big"; }
	at_exit "kill -CONT $w 2>/dev/null"
	sleep 0.5                       # a progress line is drawn meanwhile
	kill -CONT "$w"
	pty_wait
	want_rc 0 "" tty.out
	same_tree src dst
	tr -d '\r' <tty.out | grep -Eq 'ETA' || fail "no progress line was drawn: $(head -c 300 tty.out)"
	# what stays on each line is the text after its last carriage return
	# (the terminal ends lines in \r\n)
	sed 's/\r$//; s/.*\r//' tty.out >shown
	grep -E '%|ETA|files  ' shown &&
	    fail "a name printed after the progress line: $(od -c tty.out | head -n 20)"
	grep -qx 'big' shown || fail "no 'big' line: $(od -c tty.out | head -n 20)"
}

# The summary counts the bytes of files copied, not of those that failed
# (here: the destination filled up in the middle of one).
t_summary_failed_bytes()
{
	is_root || skip "needs root to mount a tmpfs"
	mkdir -p src/a src/b mnt
	head -c 102400 /dev/urandom >src/a/small
	head -c 4194304 /dev/urandom >src/b/large
	mnt=$(pwd -P)/mnt
	mount -t tmpfs -o size=1m pcopy-test "$mnt" 2>/dev/null || skip "cannot mount a tmpfs"
	at_exit "umount -l '$mnt' 2>/dev/null"
	pc -j 1 src mnt/dst
	want_rc 1
	want=$(find mnt/dst -type f -exec stat -c %s {} + | awk '
	{ v += $1 } END { u = 0; split("B kB MB GB", n, " ")
		while (v >= 1000 && u < 3) { v /= 1000; u++ }
		printf(u ? "%.1f %s\n" : "%.0f %s\n", v, n[u + 1]) }')
	grep -Eq "^pcopy: [0-9]+ files, [0-9]+ dirs, $want in " pc.err ||
	    fail "summary should say $want (the files in DEST): $(tail -n 1 pc.err)"
}

# -n counts the data of a sparse file, not its size.
t_dry_run_sparse()
{
	mkdir src
	truncate -s 1G src/sparse
	dd if=/dev/zero of=src/sparse bs=1M count=1 seek=100 conv=notrunc status=none
	[ "$(stat -c %b src/sparse)" -lt 4096 ] || skip "no holes in files here"
	pc_ok -n src dst
	grep -Eq '^pcopy: dry run: would copy 1 files, 0 dirs, 1\.[0-9] MB' pc.err ||
	    fail "want 1.x MB (the data), not the 1.1 GB size: $(tail -n 1 pc.err)"
}

# -- the jobs pcopy is used for (issue 10) --

# mk_mixed DIR: a small tree with every kind of entry -cp -a keeps: files,
# a hard link group across directories, symlinks, a FIFO, a device (root),
# a read-only directory and set times.
mk_mixed()
{
	mk_files "$1" 5 30
	ln "$1/d0/f0" "$1/d3/hard"
	ln -s ../d0/f1 "$1/d1/link"
	ln -s nowhere "$1/dangling"
	mkfifo "$1/d2/fifo"
	if is_root; then
		mknod "$1/d2/null" c 1 3
	fi
	mkdir "$1/ro"
	echo in-ro >"$1/ro/f"
	chmod 0555 "$1/ro"
	touch -h -d '2003-03-03 03:03:03.3' "$1/d1/link" "$1/dangling"
	touch -d '2004-04-04 04:04:04.4' "$1/d4" "$1"
}

# stamps DIR: one line per non-directory of DIR: path, inode, ctime.
stamps()
{
	find "$1" ! -type d -printf '%P %i %C@\n' | sort
}

# Rescue: with -x, DEST may be another file system mounted inside SOURCE
# (pcopy -x / /mnt/new), also through a bind mount of SOURCE; its mount
# point, like every other one, is copied as an empty directory.  Without
# -x, or with DEST on SOURCE's own file system, it stays refused.
t_rescue_mounts()
{
	is_root || skip "needs root to mount"
	have unshare || skip "unshare missing"
	no_valgrind "runs pcopy in a mount namespace"
	mkdir -p root
	unshare -m --propagation private sh -c '
	set -e
	P=$1 Q=$2     # Q: the emulator, or nothing
	mount -t tmpfs -o size=20m rootfs root
	mkdir -p root/etc root/proc root/run root/mnt/new root/mnt/old root/home/u
	echo host >root/etc/hostname
	echo hi >root/home/u/notes
	ln -s ../etc/hostname root/home/u/link
	mount -t tmpfs -o size=1m run root/run
	echo pid >root/run/lock
	mount -t tmpfs -o size=20m new root/mnt/new
	touch -d "2005-05-05 05:05:05.5" root/etc root/home
	rc=0; $Q "$P" -q root root/mnt/new 2>err1 || rc=$?
	[ "$rc" -eq 2 ] || { echo "without -x: exit $rc, want 2"; exit 1; }
	grep -q "use -x" err1 || { echo "no hint to use -x: $(cat err1)"; exit 1; }
	rc=0; $Q "$P" -q -x root root/home/new 2>err2 || rc=$?
	[ "$rc" -eq 2 ] || { echo "-x, DEST on the same fs: exit $rc, want 2"; exit 1; }
	[ ! -e root/home/new ] || { echo "root/home/new created"; exit 1; }
	$Q "$P" -q -x root root/mnt/new 2>err3 || { echo "-x: exit $?: $(cat err3)"; exit 1; }
	[ ! -s err3 ] || { echo "-x said: $(cat err3)"; exit 1; }
	for d in run mnt/new mnt/old proc; do
		[ -d "root/mnt/new/$d" ] && [ -z "$(ls -A "root/mnt/new/$d")" ] ||
		    { echo "mount point $d not an empty directory"; exit 1; }
	done
	cmp root/etc/hostname root/mnt/new/etc/hostname
	[ "$(readlink root/mnt/new/home/u/link)" = ../etc/hostname ]
	[ "$(stat -c %y root/etc)" = "$(stat -c %y root/mnt/new/etc)" ]
	# the bind-mount recipe: mount --bind / /mnt/old; pcopy -x /mnt/old /mnt/new
	mkdir bind
	mount --bind root bind
	rm -rf root/mnt/new/*
	$Q "$P" -q -x bind root/mnt/new 2>err4 || { echo "bind: exit $?: $(cat err4)"; exit 1; }
	cmp root/home/u/notes root/mnt/new/home/u/notes
	[ -z "$(ls -A root/mnt/new/run)" ] || { echo "bind: run not empty"; exit 1; }
	umount bind root/mnt/new root/run root
	' sh "$PCOPY" "$qemu" || fail "see above"
}

# cp habits: FILE DIR and FILE DIR/ copy to DIR/FILE; -t DIR SOURCE...;
# more than two operands without -t is a usage error with a hint.
t_cp_habits()
{
	mkdir -p src/sub dir dir2 tdir
	echo a >src/f
	echo b >src/sub/g
	echo plain >file
	chmod 0640 file
	touch -d '2006-06-06 06:06:06.6' file
	pc_ok file dir
	same_tree file dir/file
	grep -q "into 'dir/file'" pc.err || fail "summary does not say where: $(cat pc.err)"
	pc_ok file dir2/
	same_tree file dir2/file
	ln -s dir dirlink
	pc_ok file dirlink
	[ -f dir/file ] && [ -L dirlink ] || fail "FILE DIRLINK did not copy into DIR"
	pc file nodir/
	[ "$rc" -eq 2 ] && grep -q "nodir/': not a directory" pc.err ||
	    fail "FILE nodir/: exit $rc: $(cat pc.err)"
	[ ! -e nodir ] || fail "nodir created"
	pc_ok -t tdir file src src/sub
	same_tree file tdir/file
	same_tree src tdir/src
	same_tree src/sub tdir/sub
	grep -q "into 'tdir'" pc.err || fail "-t: summary does not say where: $(cat pc.err)"
	pc_ok --target-directory=tdir file
	bad=0
	usage_err "-t DIR" src dir dstX
	usage_err "-t DIR" file src/f dstX
	usage_err "both be copied to" -t tdir file src/../file
	usage_err "not a directory" -t file src
	usage_err "into itself" -t src/sub src
	[ "$bad" -eq 0 ]
	[ ! -e tdir/src/sub/src ] || fail "-t into SOURCE copied something"
}

# -t DIR SOURCE...: a SOURCE that cannot be set up (missing, not a file
# or directory, unreadable, its DEST taken by a file) fails alone, named,
# as with cp: the SOURCEs after it are still copied, exit 1.
t_target_source_fails()
{
	as_nobody
	if ! $runas test -x "$PCOPY"; then
		skip "uid 65534 cannot run $PCOPY"
	fi
	mkdir -p a/sub b c locked tdir
	echo 1 >a/sub/f
	echo 2 >b/f
	echo 3 >c/f
	echo 4 >file
	mkfifo fifo
	echo taken >tdir/c      # c's DEST is a file: c fails, file still copied
	chmod 0777 tdir
	chmod 0000 locked
	! is_root || chown -R 65534:65534 a b c file     # nobody's copies keep their owner
	pc -t tdir a missing b fifo locked c file
	want_rc 1 "-t with failing SOURCEs"
	for n in missing fifo locked; do
		grep -q "^pcopy: '$n': " pc.err || fail "'$n' not named: $(cat pc.err)"
	done
	grep -q "'tdir/c': exists and is not a directory" pc.err ||
	    fail "c's DEST not named: $(cat pc.err)"
	! grep -q stopping pc.err || fail "the run stopped: $(cat pc.err)"
	grep -q ", 4 failed" pc.err || fail "summary: $(tail -n 1 pc.err)"
	same_tree a tdir/a
	same_tree b tdir/b
	same_tree file tdir/file
	[ "$(cat tdir/c)" = taken ] || fail "tdir/c was changed"
	[ ! -e tdir/missing ] && [ ! -e tdir/fifo ] && [ ! -e tdir/locked ] ||
	    fail "a failed SOURCE left something in tdir: $(ls tdir)"
	# one SOURCE without -t: a setup error as before (exit 2)
	pc missing dst
	want_rc 2 "missing SOURCE without -t"
}

# Single-file errors name the file itself, not FILE/FILE.
t_single_file_paths()
{
	as_nobody
	mkdir -p src ro
	echo secret >src/f
	echo ok >ok
	chmod 0000 src/f
	chmod 0555 ro
	rc=0
	# shellcheck disable=SC2086
	$runas $qemu "$PCOPY" -q src/f out </dev/null >pc.out 2>pc.err || rc=$?
	want_rc 1 "unreadable file"
	grep -q "^pcopy: 'src/f': " pc.err || fail "does not name src/f: $(cat pc.err)"
	rc=0
	# shellcheck disable=SC2086
	$runas $qemu "$PCOPY" -q ok ro/ok </dev/null >pc.out 2>pc.err || rc=$?
	want_rc 1 "read-only DEST dir"
	grep -q "^pcopy: 'ro/ok': " pc.err || fail "does not name ro/ok: $(cat pc.err)"
	! grep -q "ok/ok\|f/f" pc.err || fail "names FILE/FILE: $(cat pc.err)"
}

# Option errors say what the user typed, and "ambiguous" for abbreviations.
t_option_errors()
{
	mkdir src
	echo a >src/f
	bad=0
	usage_err "'--progress' takes no argument" --progress=1 src dstX
	usage_err "'--progress' takes no argument" src dstX --progress=1
	usage_err "'--exclude' needs an argument" src dstX --exclude
	usage_err "'--jobs' needs an argument" src dstX --jobs
	usage_err "'-j' needs an argument" src dstX -j
	usage_err "ambiguous option '--ver'.*--verbose.*--verify.*--version" --ver src dstX
	usage_err "unknown option '--bogus'" src --bogus=3 dstX
	usage_err "unknown option '-y'" -y src dstX
	[ "$bad" -eq 0 ]
	! grep -q "'-[PCEFLS]'" pc.err || fail "an internal short option was named"
}

# pcopy . and pcopy x/.. get the directory's real name + "-copy" next to
# it; pcopy / is refused; the summary says where the copy went.
t_default_dest_dot()
{
	mkdir -p work/tree/sub
	echo x >work/tree/sub/f
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	(cd work/tree && $qemu "$PCOPY" . </dev/null >../out 2>../err) ||
	    fail "pcopy .: exit $?: $(cat work/err)"
	[ -d work/tree-copy ] || fail "pcopy . did not make work/tree-copy: $(ls -A work work/tree)"
	same_tree work/tree work/tree-copy
	grep -q "into '.*/work/tree-copy'\$" work/err ||
	    fail "summary does not say where: $(cat work/err)"
	[ ! -e work/tree/.-copy ] || fail "made .-copy"
	rm -rf work/tree-copy
	pc_ok work/tree/sub/..
	same_tree work/tree work/tree-copy
	bad=0
	usage_err "give DEST" /
	[ "$bad" -eq 0 ]
}

# Non-root into a DEST directory that exists and belongs to someone else
# (a Kubernetes emptyDir): one warning, exit 0, everything below exact.
t_dest_not_owned()
{
	as_nobody
	is_root || skip "needs root to make a DEST owned by another user"
	mkdir -p src/sub
	echo a >src/f
	echo b >src/sub/g
	chmod 0750 src/sub
	touch -d '2007-07-07 07:07:07.7' src/sub src
	chown -R 65534:65534 src
	mkdir vol
	chmod 0777 vol
	before=$(stat -c '%u %g %a' vol)
	rc=0
	# shellcheck disable=SC2086
	$runas $qemu "$PCOPY" src vol </dev/null >pc.out 2>pc.err || rc=$?
	want_rc 0
	[ "$(grep -c "^pcopy: 'vol'" pc.err)" -eq 1 ] ||
	    fail "want one warning naming vol: $(cat pc.err)"
	grep -q "belongs to uid 0" pc.err || fail "warning does not say why: $(cat pc.err)"
	[ "$(stat -c '%u %g %a' vol)" = "$before" ] || fail "vol's owner or mode changed"
	same_tree src/sub vol/sub
	cmp src/f vol/f
	[ "$(stat -c '%u %a %Y' vol/f)" = "$(stat -c '%u %a %Y' src/f)" ] ||
	    fail "vol/f metadata differs"
}

# A read-only DEST: the first EROFS stops the copy with one line, exit 1.
t_dest_readonly()
{
	is_root || skip "needs root to mount"
	mk_files src 4 50
	mkdir dst
	m=$(pwd -P)/dst
	mount -t tmpfs -o ro,size=1m pcopy-ro "$m" 2>/dev/null || skip "cannot mount a tmpfs"
	at_exit "umount -l '$m' 2>/dev/null"
	pc -q src dst
	want_rc 1
	[ "$(wc -l <pc.err)" -eq 1 ] || fail "$(wc -l <pc.err) lines, want 1: $(head -n 5 pc.err)"
	grep -q "Read-only file system; stopping" pc.err || fail "$(cat pc.err)"
}

# workers_in FILE: the number of processes an strace -f log shows started:
# calls of fork, vfork, clone and clone3 that returned a PID, a call cut
# in two (<unfinished ...>, <... clone resumed>) counted once, threads
# (CLONE_THREAD: qemu-user starts one in every process) not at all.
workers_in()
{
	awk '/<unfinished \.\.\.>$/ { held[$1] = $0; next }
	    /<\.\.\. [a-z0-9]+ resumed>/ { $0 = held[$1] " " $0 }
	    /(clone3?|v?fork)\(/ && !/CLONE_THREAD/ && / = [1-9][0-9]*( |$)/ { n++ }
	    END { print n + 0 }' "$1"
}

# cgroup_setup: what the cgroup cases need (root, strace, unshare, 2 to 16
# CPUs: default -j is 4 per CPU), and a small tree in src.
cgroup_setup()
{
	is_root || skip "needs root to mount"
	have strace || skip "strace missing"
	have unshare || skip "unshare missing"
	no_valgrind "counts pcopy's own forks"
	ncpu=$(nproc)
	[ "$ncpu" -ge 2 ] && [ "$ncpu" -le 16 ] || skip "needs 2 to 16 usable CPUs, have $ncpu"
	strace -f -qq -e trace=clone -o /dev/null true 2>/dev/null || skip "strace does not work here"
	mk_files src 2 5
}

# Default -j: 4 per usable CPU, where usable counts the affinity mask and a
# cgroup v2 cpu.max quota (the container's CPU limit).  The cgroup files
# are faked on a tmpfs in a private mount namespace, so a real limit on
# the machine running the test does not matter.
t_jobs_cgroup()
{
	cgroup_setup
	cg=$(sed -n 's/^0:://p' /proc/self/cgroup)
	for q in "max 100000" "50000 100000"; do
		rm -rf dst
		unshare -m --propagation private sh -c '
		set -e
		mount -t tmpfs cg /sys/fs/cgroup
		mkdir -p "/sys/fs/cgroup/$1"
		echo "$3" >"/sys/fs/cgroup/$1/cpu.max"
		strace -f -qq -e trace=fork,vfork,clone,clone3 -o trace.out $4 "$2" -q src dst
		' sh "${cg:-/}" "$PCOPY" "$q" "$qemu" || fail "cpu.max '$q': run failed"
		same_tree src dst
		cp trace.out "trace.$(echo "$q" | tr ' ' _)"
	done
	nw=$(workers_in trace.max_100000)
	[ "$nw" -eq $((4 * ncpu)) ] || fail "cpu.max 'max': $nw workers, want $((4 * ncpu))"
	nw=$(workers_in trace.50000_100000)
	[ "$nw" -eq 4 ] || fail "cpu.max '50000 100000' (half a CPU): $nw workers, want 4"
	if have taskset; then
		rm -rf dst
		# shellcheck disable=SC2086 # $qemu is a command or nothing
		taskset -c 0 strace -f -qq -e trace=fork,vfork,clone,clone3 \
		    -o trace.out $qemu "$PCOPY" -q src dst || fail "taskset run failed"
		nw=$(workers_in trace.out)
		[ "$nw" -eq 4 ] || fail "pinned to one CPU: $nw workers, want 4"
	fi
}

# Default -j under a cgroup v1 CPU quota (cpu.cfs_quota_us over
# cpu.cfs_period_us, of the cgroup or an ancestor), faked as t_jobs_cgroup
# fakes v2: files on a tmpfs.  Once found through /proc/self/cgroup and
# /proc/self/mountinfo (a fake /proc bound over the real one, whose
# mount's root is the parent cgroup, as in a container), once at the
# usual /sys/fs/cgroup/cpu,cpuacct when there is no /proc.
t_jobs_cgroup_v1()
{
	cgroup_setup
	mkdir -p cgv1 fakeproc/self
	unshare -m --propagation private sh -c '
	set -e
	mount -t tmpfs cg "$PWD/cgv1"
	mkdir -p cgv1/pod1
	echo -1 >cgv1/pod1/cpu.cfs_quota_us
	echo 100000 >cgv1/pod1/cpu.cfs_period_us
	echo 50000 >cgv1/cpu.cfs_quota_us       # the parent: half a CPU
	echo 100000 >cgv1/cpu.cfs_period_us
	printf "12:memory:/kube/pod1\n4:cpu,cpuacct:/kube/pod1\n0::/\n" >fakeproc/self/cgroup
	printf "30 25 0:26 /kube %s rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n" \
	    "$PWD/cgv1" >fakeproc/self/mountinfo
	mount --bind fakeproc /proc
	strace -f -qq -e trace=fork,vfork,clone,clone3 -o trace.proc $2 "$1" -q src dst1
	umount /proc
	mount -t tmpfs cg /sys/fs/cgroup
	mkdir /sys/fs/cgroup/cpu,cpuacct
	echo 50000 >/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us
	echo 100000 >/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us
	mount -t tmpfs none /proc               # no /proc at all
	strace -f -qq -e trace=fork,vfork,clone,clone3 -o trace.sys $2 "$1" -q src dst2
	' sh "$PCOPY" "$qemu" || fail "run failed"
	same_tree src dst1
	same_tree src dst2
	nw=$(workers_in trace.proc)
	[ "$nw" -eq 4 ] || fail "v1 quota of the parent cgroup (half a CPU): $nw workers, want 4"
	nw=$(workers_in trace.sys)
	[ "$nw" -eq 4 ] || fail "v1 quota at /sys/fs/cgroup/cpu,cpuacct: $nw workers, want 4"
}

# fork refused (RLIMIT_NPROC): pcopy copies with the workers it could
# start and says so (exit 0); with none at all it exits 2.
t_fork_refused()
{
	is_root || skip "needs root to run under a private uid"
	have setpriv || skip "setpriv missing"
	have prlimit || skip "prlimit missing"
	no_valgrind "counts processes"
	no_qemu "RLIMIT_NPROC also counts the thread qemu-user starts in every process; a worker whose thread cannot start dies in qemu (exit 127)"
	mk_files src 3 20
	chmod 0777 .
	chmod 0711 "$T"
	uid=$((40000 + $$ % 20000))     # a uid nobody else runs processes as
	run_as="setpriv --reuid=$uid --regid=$uid --clear-groups --"
	rc=0
	prlimit --nproc=3 $run_as "$PCOPY" -j 8 src dst </dev/null >pc.out 2>pc.err || rc=$?
	want_rc 0 "nproc 3"
	grep -q "started 2 of 8 workers" pc.err || fail "no 'started 2 of 8': $(cat pc.err)"
	cmp src/d2/f19 dst/d2/f19
	rc=0
	prlimit --nproc=1 $run_as "$PCOPY" -q src dst2 </dev/null >pc.out 2>pc.err || rc=$?
	want_rc 2 "nproc 1"
	grep -q "cannot start a worker" pc.err || fail "$(cat pc.err)"
}

# -u skips symlinks, FIFOs and devices that are already identical (not
# touched: same inode and ctime) and replaces those that differ.
t_update_nodes()
{
	mk_mixed src
	pc_ok src dst
	stamps dst >before
	sleep 0.05
	pc_ok -u src dst
	stamps dst >after
	cmp -s before after || fail "-u touched identical entries:
$(diff before after | head -n 10)"
	grep -q " skipped" pc.err || fail "$(cat pc.err)"
	ln -sfn elsewhere src/dangling
	touch -h -d '2003-03-03 03:03:03.3' src/dangling
	pc_ok -u src dst
	[ "$(readlink dst/dangling)" = elsewhere ] || fail "a changed symlink was skipped"
	same_tree src dst
	pc_ok -n -u src dst
	! grep -v '^skip ' pc.out | grep -q . || fail "-n -u would copy: $(grep -v '^skip' pc.out)"
}

# Without -u, -n or a progress line, the walk queues a regular file that
# readdir found without a stat: the worker's fstat of what it opens is the
# only one.  Hard-linked files and files over 1 MiB come back to the parent
# (R_RESTAT), which stats them and queues them as before: links stay
# links, and a large file travels alone.  Fails where every file is stat'ed.
t_walk_nostat()
{
	have strace || skip "strace missing"
	no_valgrind "counts pcopy's system calls"
	mk_files src 3 30
	ln src/d0/f1 src/d1/link1
	ln src/d0/f1 src/d2/link2
	head -c 3000000 /dev/urandom >src/d1/big
	head -c 2000000 /dev/urandom >src/d1/big2
	chmod 0600 src/d0/f2
	touch -d '2001-02-03 04:05:06.7' src/d2/f3
	nall=$(find src -type f | wc -l)
	ndir=$(find src -type d | wc -l)
	# (under qemu-user: the host's calls, the guest's translated)
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	strace -f -qq -e trace=newfstatat,fstatat64,statx,lstat,stat -o st \
	    $qemu "$PCOPY" -q src dst </dev/null >pc.out 2>pc.err || fail "exit $?: $(cat pc.err)"
	[ ! -s pc.err ] || fail "said: $(cat pc.err)"
	same_tree src dst
	[ "$(stat -c %h dst/d0/f1)" -eq 3 ] || fail "hard links not kept: $(stat -c %h dst/d0/f1)"
	# stats of a name; a descriptor's (name "": fstat, which qemu-user
	# makes a newfstatat(fd, "", AT_EMPTY_PATH) on the host) not counted
	nst=$(grep -E '(newfstatat|fstatat64|statx|stat)\(' st |
	    grep -Evc '\((AT_FDCWD|[0-9]+), "",' || :)
	# the directories, the 3 names of the linked file, the 2 large ones
	[ "$nst" -le $((ndir + 5 + 20)) ] ||
	    fail "$nst stat calls for $nall files in $ndir directories: each file stat'ed"
	pc_ok -u src dst
	grep -Eq "^pcopy: 0 files, .*, $nall skipped" pc.err || fail "-u: $(cat pc.err)"
	# an overlay over two tmpfs: its files' st_dev is not their
	# directory's, so the first file comes back and the walk stats all
	is_root && have unshare || return 0
	mkdir ov
	unshare -m --propagation private sh -c '
	cd ov && mkdir lo up mnt && mount -t tmpfs lo lo && mount -t tmpfs up up &&
	    mkdir up/u up/w && cp -a ../src/. lo/ &&
	    mount -t overlay ov -o lowerdir=lo,upperdir=up/u,workdir=up/w mnt || exit 77
	echo new >mnt/d0/upper
	$2 "$1" -q mnt ../ovdst </dev/null >../pc.out 2>../pc.err || exit 1
	cp -a mnt ../ovsrc
	' sh "$PCOPY" "$qemu" || { rc=$?; [ "$rc" -eq 77 ] && return 0; fail "overlay: exit $rc: $(cat pc.err)"; }
	[ ! -s pc.err ] || fail "overlay: said: $(cat pc.err)"
	same_tree ovsrc ovdst
}

# Workers run at a nice value 5 above the parent's (WORKER_NICE), so that
# the walk that feeds them is not starved when they outnumber the CPUs;
# the parent keeps the priority it was started with.
t_worker_nice()
{
	have strace || skip "strace missing"
	no_valgrind "traces pcopy's system calls"
	mk_files src 2 3
	base=$(nice)
	want=$((base + 5))
	[ "$want" -le 19 ] || want=19
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	strace -f -qq -o st -e trace=setpriority $qemu "$PCOPY" -q -j 3 src dst \
	    </dev/null >pc.out 2>pc.err || fail "exit $?: $(cat pc.err)"
	same_tree src dst
	# (strace -f may split a call: "setpriority(... <unfinished ...>")
	n=$(grep -c "setpriority(PRIO_PROCESS, 0, $want[ )]" st || :)
	[ "$n" -eq 3 ] || fail "$n of 3 workers set nice $want: $(head -n 5 st)"
	[ "$(grep -c 'setpriority(' st)" -eq 3 ] || fail "another priority was set: $(cat st)"
}

# A mirror's re-run (-u --delete) of an unchanged tree: the walk stats no
# regular file (a worker's stat decides -u), each DEST directory is read
# once (the sweep of hidden names and --delete's listing together), and a
# directory whose owner, mode and times are right already gets no
# mkdirat, chown, chmod or utimensat.  What did change is still set: a
# file's content, a directory's mode, atime, mtime, xattrs and owner.
t_mirror_rerun()
{
	have strace || skip "strace missing"
	no_valgrind "counts pcopy's system calls"
	mk_files src 3 30
	mkdir -p src/e/1 src/e/2 src/e/3 src/e/4 src/e/5 src/e/6
	ln src/d0/f1 src/d1/link1
	head -c 3000000 /dev/urandom >src/d1/big
	nall=$(find src -type f | wc -l)
	ndir=$(find src -type d | wc -l)
	# (find, before: reading a directory may change its atime)
	pc_ok -u --delete src dst
	# the parent only (no -f); under qemu-user, the host's calls
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	strace -qq -o st -e trace=newfstatat,fstatat64,statx,lstat,stat,getdents64,mkdirat,mkdir,fchown,fchownat,fchmod,fchmodat,utimensat \
	    $qemu "$PCOPY" -u --delete src dst </dev/null >pc.out 2>pc.err || fail "exit $?: $(cat pc.err)"
	grep -Eq "^pcopy: 0 files, .*, $nall skipped" pc.err || fail "re-run: $(cat pc.err)"
	nst=$(grep -E '(newfstatat|fstatat64|statx|stat)\(' st | grep -Evc '\((AT_FDCWD|[0-9]+), "",' || :)
	[ "$nst" -le $((ndir + 5)) ] ||
	    fail "the walk made $nst stat calls for $nall files in $ndir directories"
	ngd=$(grep -c '^getdents64(' st || :)
	[ "$ngd" -le $((4 * ndir + 2)) ] ||
	    fail "$ngd getdents64 calls for $ndir directories: DEST's read twice"
	# dest_top's mkdir of DEST, the probe of DEST's time precision, and
	# DEST's own times (the probe of O_TMPFILE links and unlinks a name)
	nmeta=$(grep -Ec '^(mkdirat|mkdir|fchown|fchownat|fchmod|fchmodat|utimensat)\(' st || :)
	[ "$nmeta" -le 3 ] ||
	    fail "$nmeta calls set metadata on an unchanged mirror: $(grep -E '^(mkdir|fchown|fchmod|utimensat)' st | head -n 5)"
	echo more >>src/d2/f3
	chmod 0750 src/d1
	touch -a -d '2002-03-04 05:06:07.5' src/e/3
	touch -m -d '2003-04-05 06:07:08.25' src/e/4
	if have setfattr && setfattr -n user.pcopy -v 1 src/e/5 2>/dev/null; then
		xa=1
	else
		xa=0
	fi
	! is_root || chown 65534:65534 src/e/6
	want_x=$(stat -c %x src/e/3)
	pc_ok -u --delete src dst
	[ "$(stat -c %x dst/e/3)" = "$want_x" ] ||
	    fail "atime of e/3 not kept: $(stat -c %x dst/e/3), want $want_x"
	[ "$xa" -eq 0 ] || [ "$(getfattr --only-values -n user.pcopy dst/e/5 2>/dev/null)" = 1 ] ||
	    fail "xattr of e/5 not copied"
	same_tree src dst
}

# --shard decides a non-directory from readdir's inode number: a shard
# stats only its own entries (and the directories), so N shards cost about
# one walk; the final -u writes nothing but directory metadata.  The
# shards after the first find every directory made: they neither read it
# in DEST (hidden names are the final pass's to sweep) nor set its times
# (the final pass does): in all, as many getdents64 and utimensat calls as
# one plain run plus a read of SOURCE's directories per extra shard.
t_shard_cost()
{
	have strace || skip "strace missing"
	no_valgrind "counts pcopy's system calls"
	mk_mixed src
	nall=$(find src ! -type d | wc -l)
	ndir=$(find src -type d | wc -l)
	calls='newfstatat,fstatat64,statx,lstat,stat,getdents64,utimensat'
	# shellcheck disable=SC2086 # $qemu is a command or nothing
	strace -f -qq -e trace=$calls -o plain.st $qemu "$PCOPY" -q src plain \
	    </dev/null >pc.out 2>pc.err ||
	    fail "plain run: $(cat pc.err)"
	for k in 1 2 3; do
		# (under qemu-user: the host's calls, the guest's translated)
		# shellcheck disable=SC2086 # $qemu is a command or nothing
		strace -f -qq -e trace=$calls -o st$k \
		    $qemu "$PCOPY" -q --shard $k/3 src dst </dev/null >pc.out 2>pc.err ||
		    fail "--shard $k/3: $(cat pc.err)"
	done
	# stats of a name; a descriptor's (name "": fstat, which qemu-user
	# makes a newfstatat(fd, "", AT_EMPTY_PATH) on the host) not counted
	nst=$(cat st1 st2 st3 | grep -E '(newfstatat|fstatat64|statx|stat)\(' |
	    grep -Evc '\((AT_FDCWD|[0-9]+), "",' || :)
	[ "$nst" -lt $((nall + 4 * ndir + 30)) ] ||
	    fail "3 shards made $nst stat calls for $nall entries: each stats them all"
	gd=$(grep -c 'getdents64(' plain.st)
	ngd=$(cat st1 st2 st3 | grep -c 'getdents64(')
	[ "$ngd" -le $((3 * gd + 3)) ] ||
	    fail "3 shards made $ngd getdents64 calls, a plain run $gd: DEST read again"
	ut=$(grep -c 'utimensat(' plain.st)
	nut=$(cat st1 st2 st3 | grep -c 'utimensat(')
	[ "$nut" -le $((ut + 3)) ] ||
	    fail "3 shards made $nut utimensat calls, a plain run $ut: directories set again"
	stamps dst >before
	pc_ok -u src dst
	stamps dst >after
	cmp -s before after || fail "the final -u rewrote entries:
$(diff before after | head -n 10)"
	grep -Eq "^pcopy: 0 files, .*, $nall skipped" pc.err || fail "$(cat pc.err)"
	same_tree src dst
}

# --shard spreads files evenly whatever their inode numbers: 64 files made
# in turn in 4 directories of a tmpfs (whose inode numbers then go by 4
# in each directory) fall into every shard of 2 and of 4, each file into
# exactly one.  The hash of 0.1 and of the versions before put every file
# of such a directory into one shard of 2.
t_shard_spread()
{
	is_root || skip "needs root to mount a tmpfs"
	fs_mount t tmpfs
	mkdir -p t/src/a t/src/b t/src/c t/src/d
	i=0
	while [ $i -lt 64 ]; do
		for d in a b c d; do
			: >t/src/$d/f$i
		done
		i=$((i + 1))
	done
	for n in 2 4; do
		k=1 total=0
		while [ $k -le $n ]; do
			pc -n --shard $k/$n t/src x
			want_rc 0 "--shard $k/$n"
			for d in a b c d; do
				c=$(grep -c "^create $d/f" pc.out || :)
				[ "$c" -ge $((64 / n / 4)) ] ||
				    fail "--shard $k/$n: $c of the 64 files of $d (inodes $(ls -i t/src/$d | awk 'NR < 4 { printf "%s ", $1 }')...)"
				total=$((total + c))
			done
			k=$((k + 1))
		done
		[ "$total" -eq 256 ] || fail "$n shards listed $total files of 256"
	done
}

# --shard env: the shard from the job engine's environment.
t_shard_env()
{
	mk_mixed src
	for i in 0 1 2; do
		JOB_COMPLETION_INDEX=$i pc_ok -q -v --shard env/3 src dst
		cat pc.out >>copied
	done
	for i in 7 8 9; do
		SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_MIN=7 SLURM_ARRAY_TASK_COUNT=3 \
		    pc_ok -q -v --shard env src dst2
		cat pc.out >>copied2
	done
	pc_ok -q -u src dst
	pc_ok -q -u src dst2
	same_tree src dst
	same_tree src dst2
	find src ! -type d -printf '%P\n' | sort >all
	grep -vxF -f "$(find src -type d -printf '%P\n' >dirs; echo dirs)" copied | sort >got
	cmp -s all got || fail "Kubernetes indexes: not every entry copied once: $(diff all got | head)"
	bad=0
	usage_err "neither JOB_COMPLETION_INDEX" --shard env/3 src dstX
	JOB_COMPLETION_INDEX=3 usage_err "out of range" --shard env/3 src dstX
	SLURM_ARRAY_TASK_ID=2 usage_err "SLURM_ARRAY_TASK_COUNT" --shard env src dstX
	[ "$bad" -eq 0 ]
}

# qemu_lacks_fchmodat2: succeed under a qemu-user that answers fchmodat2
# (Linux 6.6) with ENOSYS, as qemu 7.2 does ("Unknown syscall 452" in its
# -strace log of a FIFO's copy): pcopy then sets a node's mode through
# /proc/self/fd, as on an older kernel.
qemu_lacks_fchmodat2()
{
	[ -n "$qemu" ] || return 1
	rm -rf ql.src ql.dst
	mkdir ql.src
	mkfifo ql.src/p
	# shellcheck disable=SC2086 # $qemu is a command
	$qemu -strace "$PCOPY" -q -j 1 ql.src ql.dst >ql.out 2>&1 || :
	ql_rc=0
	# not anchored: the workers' and the parent's -strace lines are
	# written in pieces, and one process's can land inside another's
	grep -q 'Unknown syscall 452' ql.out || ql_rc=1
	rm -rf ql.src ql.dst ql.out
	return $ql_rc
}

# chroot_qemu ROOT: under qemu-user, copy the emulator (a static binary)
# into ROOT and set cq to the words, one a line, that run it there, and
# cq_name to its file name; elsewhere both are empty.  A chroot's command
# line is then $cq followed by the original one.  An emulator without
# fchmodat2 (nor, then, the *xattrat calls of 6.13) is a kernel before 6.6
# to pcopy, which then sets a node's mode and a symlink's xattrs through
# /proc/self/fd (a container there has /proc): ROOT/proc is mounted, and
# cq_proc set to proc.
chroot_qemu()
{
	cq='' cq_name='' cq_proc=''
	[ -n "$qemu" ] || return 0
	if qemu_lacks_fchmodat2; then
		mkdir "$1/proc"
		mount -t proc proc "$1/proc" || skip "cannot mount /proc in the chroot"
		at_exit "umount '$(pwd -P)/$1/proc'"
		cq_proc=proc
	fi
	cq_root=$1
	if have readelf && readelf -l "$qemu_bin" 2>/dev/null | grep -q INTERP; then
		skip "$qemu_bin is dynamically linked: it cannot run in a chroot"
	fi
	cq_name=${qemu_bin##*/}
	cp "$qemu_bin" "$cq_root/$cq_name"
	# shellcheck disable=SC2086 # the emulator's arguments follow it
	set -- $qemu
	shift
	cq=$(printf '%s\n' "/$cq_name" "$@")
}

# args_of LINE: the words of a JSON-style ["a", "b"] list, one a line.
json_words()
{
	sed 's/^ *\[ *"//; s/" *\] *$//; s/", *"/\n/g'
}

# The Kubernetes example as the cluster runs it: the exact command lines
# of examples/k8s/*.yaml, one pod per index with JOB_COMPLETION_INDEX set
# and nothing else (env -i), chrooted into a directory that holds only the
# binary and the two volumes (no shell, no /proc, no libc), then the
# final Job.  The result must equal SOURCE, and the final pass must leave
# every non-directory the shards made untouched.  Under qemu-user the
# emulator is put in the chroot too, and runs the same command lines.
t_examples_k8s()
{
	is_root || skip "needs root for chroot"
	no_valgrind "runs the binary in a chroot"
	chroot=$(command -v chroot) || skip "chroot missing"
	ex=$SRCDIR/examples/k8s
	[ -f "$ex/copy-job.yaml" ] || fail "$ex/copy-job.yaml missing"
	n=$(sed -n 's/^  completions: *//p' "$ex/copy-job.yaml")
	sed -n 's/^ *command: *//p' "$ex/copy-job.yaml" | json_words >cmd
	sed -n 's/^ *command: *//p' "$ex/final-job.yaml" | json_words >fcmd
	grep -qx -- "--shard" cmd && grep -qx "env/$n" cmd ||
	    fail "copy-job.yaml: no '--shard env/$n' for $n completions: $(cat cmd)"
	bin=$(head -n 1 cmd)
	grep -q "^COPY --from=build [^ ]*/pcopy $bin\$" "$SRCDIR/examples/Dockerfile" ||
	    fail "examples/Dockerfile does not put the binary at $bin"
	mkdir -p "root$(dirname "$bin")" root/src root/dst
	cp "$PCOPY" "root$bin"
	chroot_qemu root
	mk_mixed root/src
	chmod 0777 root/dst
	[ -z "$(find root -maxdepth 1 ! -name root ! -name src ! -name dst ! -name "$(basename "$bin")" ! -name "$cq_name" ! -name "$cq_proc")" ] ||
	    fail "the chroot holds more than the binary and the volumes"
	i=0 pids=
	while [ "$i" -lt "$n" ]; do
		# shellcheck disable=SC2046,SC2086 # words, one a line
		(IFS=$nl; exec env -i JOB_COMPLETION_INDEX=$i "$chroot" root $cq $(cat cmd)) \
		    >out$i 2>err$i </dev/null &
		pids="$pids $!"
		i=$((i + 1))
	done
	i=0
	for p in $pids; do
		rc=0
		wait "$p" || rc=$?
		[ "$rc" -eq 0 ] && [ ! -s err$i ] || fail "index $i: exit $rc: $(cat err$i)"
		i=$((i + 1))
	done
	stamps root/dst >before
	rc=0
	# shellcheck disable=SC2046,SC2086
	(IFS=$nl; exec env -i "$chroot" root $cq $(cat fcmd)) >out 2>err </dev/null || rc=$?
	[ "$rc" -eq 0 ] || fail "final Job: exit $rc: $(cat err)"
	stamps root/dst >after
	cmp -s before after || fail "the final Job rewrote entries: $(diff before after | head)"
	same_tree root/src root/dst
}

# slurm_cmd FILE: the pcopy command line of an sbatch script, with $1 and
# $2 replaced by SRC and DST, one word a line.
slurm_cmd()
{
	sed -n 's/^exec //p' "$1" | tr ' ' '\n' | sed "s|^\"\\\$1\"\$|$2|; s|^\"\\\$2\"\$|$3|"
}

# The Slurm example without Slurm: the exact command lines of
# examples/slurm/*.sbatch with the array variables Slurm sets, in a chroot
# holding only the binary (as /bin/pcopy, found by PATH).  Under qemu-user
# the emulator is put in the chroot too; it does not search PATH, so it is
# given /bin/pcopy for the command's first word.
t_examples_slurm()
{
	is_root || skip "needs root for chroot"
	no_valgrind "runs the binary in a chroot"
	chroot=$(command -v chroot) || skip "chroot missing"
	ex=$SRCDIR/examples/slurm
	range=$(sed -n 's/^#SBATCH --array=//p' "$ex/copy-array.sbatch")
	lo=${range%-*} hi=${range#*-}
	slurm_cmd "$ex/copy-array.sbatch" /data/src /data/dst >cmd
	slurm_cmd "$ex/final.sbatch" /data/src /data/dst >fcmd
	grep -qx pcopy cmd || fail "no pcopy command in copy-array.sbatch: $(cat cmd)"
	mkdir -p root/bin root/data/src root/data/dst
	cp "$PCOPY" root/bin/pcopy
	chroot_qemu root
	if [ -n "$cq" ]; then
		sed -i '1s|^pcopy$|/bin/pcopy|' cmd fcmd
	fi
	mk_mixed root/data/src
	i=$lo
	while [ "$i" -le "$hi" ]; do
		rc=0
		# shellcheck disable=SC2046,SC2086
		(IFS=$nl; exec env -i SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_MIN=$lo \
		    SLURM_ARRAY_TASK_MAX=$hi SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) \
		    SLURM_ARRAY_JOB_ID=42 "$chroot" root $cq $(cat cmd)) >out 2>err </dev/null || rc=$?
		[ "$rc" -eq 0 ] && [ ! -s err ] || fail "task $i: exit $rc: $(cat err)"
		i=$((i + 1))
	done
	stamps root/data/dst >before
	# shellcheck disable=SC2046,SC2086
	(IFS=$nl; exec env -i "$chroot" root $cq $(cat fcmd)) >out 2>err </dev/null ||
	    fail "final: $(cat err)"
	stamps root/data/dst >after
	cmp -s before after || fail "the final pass rewrote entries: $(diff before after | head)"
	same_tree root/data/src root/data/dst
}

# Slurm for real: a one-node cluster (munged, slurmctld, slurmd on this
# host, private ports and files), examples/slurm/submit.sh submits the
# array and the dependent final pass; wait for it and compare.
t_slurm()
{
	is_root || skip "needs root to run the Slurm daemons"
	for t in munged slurmctld slurmd sbatch scontrol; do
		have $t || skip "$t missing (Debian: slurm-wlm munge)"
	done
	no_valgrind "Slurm runs pcopy itself"
	W=$(pwd -P)
	chmod 0755 "$W"
	mkdir state spool bin
	if [ -n "$qemu" ]; then
		# the jobs run `pcopy': a script that runs it under the emulator
		# shellcheck disable=SC2086 # the emulator's other words
		sq_args=$(printf '%s\n' $qemu | tail -n +2 | tr '\n' ' ')
		cp "$PCOPY" pcopy.bin
		printf '#!/bin/sh\nexec %s %s%s "$@"\n' "$qemu_bin" "$sq_args" "$W/pcopy.bin" >bin/pcopy
		chmod 0755 bin/pcopy
	else
		cp "$PCOPY" bin/pcopy
	fi
	cp -R "$SRCDIR/examples/slurm" jobs
	dd if=/dev/urandom of=munge.key bs=1024 count=1 2>/dev/null
	chmod 0600 munge.key
	# two ports per suite: the suites of `make test-cross' run side by
	# side, and their PIDs often follow each other
	port=$((20000 + $$ % 10000 * 2))
	host=$(hostname -s)
	cat >slurm.conf <<-EOF
	ClusterName=pcopytest
	SlurmctldHost=$host(127.0.0.1)
	SlurmctldPort=$port
	SlurmdPort=$((port + 1))
	SlurmUser=root
	SlurmdUser=root
	AuthType=auth/munge
	AuthInfo=socket=$W/munge.sock
	CredType=cred/munge
	MpiDefault=none
	ProctrackType=proctrack/linuxproc
	TaskPlugin=task/none
	SwitchType=switch/none
	ReturnToService=2
	SchedulerType=sched/builtin
	SelectType=select/cons_tres
	SelectTypeParameters=CR_CPU
	JobCompType=jobcomp/none
	JobAcctGatherType=jobacct_gather/none
	AccountingStorageType=accounting_storage/none
	SlurmctldPidFile=$W/slurmctld.pid
	SlurmdPidFile=$W/slurmd.pid
	SlurmdSpoolDir=$W/spool
	StateSaveLocation=$W/state
	SlurmctldLogFile=$W/slurmctld.log
	SlurmdLogFile=$W/slurmd.log
	MinJobAge=600
	NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
	PartitionName=pcopy Nodes=ALL Default=YES MaxTime=INFINITE State=UP
	EOF
	SLURM_CONF=$W/slurm.conf
	PATH=$W/bin:$PATH
	export SLURM_CONF PATH
	at_exit "for d in slurmd slurmctld munged; do
		[ -s '$W/'\$d.pid ] && kill \$(cat '$W/'\$d.pid) 2>/dev/null
	done; n=0; while [ \$n -lt 100 ] && for d in slurmd slurmctld munged; do
		[ -s '$W/'\$d.pid ] && kill -0 \$(cat '$W/'\$d.pid) 2>/dev/null && break
	done; do sleep 0.1; n=\$((n + 1)); done"
	munged -f --socket="$W/munge.sock" --key-file="$W/munge.key" \
	    --pid-file="$W/munged.pid" --log-file="$W/munged.log" \
	    --seed-file="$W/munged.seed" || skip "munged does not start: $(tail -n 3 munged.log)"
	slurmctld -f "$W/slurm.conf" || fail "slurmctld: $(tail -n 5 slurmctld.log)"
	slurmd -f "$W/slurm.conf" || fail "slurmd: $(tail -n 5 slurmd.log)"
	n=0
	until timeout 10 sinfo -h -o %t 2>/dev/null | grep -q idle; do
		# (a controller that could not start, its port taken, is gone)
		if [ -s slurmctld.pid ] && ! kill -0 "$(cat slurmctld.pid)" 2>/dev/null; then
			fail "slurmctld stopped: $(tail -n 3 slurmctld.log)"
		fi
		n=$((n + 1))
		[ $n -lt 150 ] || fail "the node never became idle: $(sinfo 2>&1; tail -n 5 slurmd.log)"
		sleep 0.1
	done
	mk_mixed src
	fid=$(sh jobs/submit.sh "$W/src" "$W/dst") || fail "submit.sh failed"
	fid=${fid%%;*}
	n=0
	while :; do
		state=$(scontrol show job "$fid" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
		case $state in
		COMPLETED) break ;;
		PENDING|RUNNING|CONFIGURING|COMPLETING|'') ;;
		*) fail "final job $fid: $state: $(cat jobs/*.out 2>/dev/null | head)
$(scontrol show job | grep -E 'JobId|JobState|Reason' | head -n 20)" ;;
		esac
		n=$((n + 1))
		[ $n -lt 600 ] || fail "final job $fid not done after 60 s: $state"
		sleep 0.1
	done
	nout=$(find jobs -name 'pcopy-shard-*.out' | wc -l)
	[ "$nout" -eq 4 ] || fail "want 4 array tasks, saw $nout outputs"
	! grep -q . jobs/*.out || fail "the jobs said: $(cat jobs/*.out)"
	same_tree src dst
}

# -- runner --

# every case, in the order they are defined
ALL=$(sed -n 's/^\(t_[a-z0-9_]*\)()$/\1/p' "$0")

passed=0 failed=0 skipped=0

# run NAME: run case NAME in a subshell in its own fresh directory.
run()
{
	dir=$T/$1
	log=$T/$1.log
	SKIPMSG=$T/$1.skip
	mkdir "$dir"
	t_start=$(date +%s)
	(
		set -e
		cd "$dir"
		"$1"
	) >"$log" 2>&1 </dev/null
	st=$?
	took=
	[ -z "${TEST_TIMES-}" ] || took=" [$(($(date +%s) - t_start)) s]"
	chmod -R u+rwx "$dir" 2>/dev/null
	if [ "$st" -eq 0 ] && ! no_temp_files "$dir" >>"$log" 2>&1; then
		st=1
	fi
	case $st in
	0)
		passed=$((passed + 1))
		echo "ok $1$took"
		;;
	77)
		skipped=$((skipped + 1))
		echo "skip $1 ($(cat "$SKIPMSG" 2>/dev/null))$took"
		;;
	*)
		failed=$((failed + 1))
		echo "FAIL $1$took"
		[ "$st" -eq 1 ] || echo "(exit status $st)" >>"$log"
		sed 's/^/    /' "$log"
		;;
	esac
	rm -rf "$dir" "$log" "$SKIPMSG"
}

[ $# -gt 0 ] && ALL=$*
for c in $ALL; do
	case $c in
	t_*) ;;
	*) echo "test.sh: $c: not a case name" >&2; exit 2 ;;
	esac
	if ! command -v "$c" >/dev/null 2>&1; then
		echo "test.sh: $c: no such case" >&2
		exit 2
	fi
	run "$c"
done

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
