/* pcopy.c -- copy a directory tree with a pool of worker processes
 * SPDX-License-Identifier: MIT
 *
 * Parallel operation works like this.
 *
 * Processes.  One parent and N workers (-j N).  The parent walks SOURCE,
 * creates every directory in DEST, keeps the job queue, owns the terminal
 * and is the only process that prints.  Workers copy the entries they are
 * sent and report back; they never print.  Workers are forked once, before
 * the walk, and run WORKER_NICE below the parent in priority, so that they
 * never starve the walk that feeds them; a worker that dies is reaped,
 * reported and replaced.  With a progress line there is one more child,
 * the census (below).
 *
 * Channels.  Each worker has one AF_UNIX SOCK_SEQPACKET socketpair: jobs go
 * down, results come up.  A socket rather than a pipe because every job
 * carries the two directory descriptors it works in (SCM_RIGHTS): workers
 * open and create names relative to those, never by full path, so there is
 * no PATH_MAX limit and a directory of DEST swapped for a symlink during the
 * copy cannot redirect a write.  SEQPACKET keeps message boundaries, so one
 * recvmsg is one message.  End of file on a channel means the peer is gone:
 * for the parent, that worker died (waitpid says how); for a worker, the
 * parent has no more jobs or is dead.
 *
 * Messages.  A fixed header (struct msg: type, job id, payload length,
 * entry or report count, job flags, bytes written) and a payload.
 *   MSG_JOB   parent -> worker, with fds {source dir, dest dir} and
 *             flags (JF_*: how to treat that destination directory):
 *             `count` entries (struct ent + name), all in that directory:
 *             regular files, symlinks, FIFOs, sockets and devices, with
 *             what the walk's fstatat saw (type, dev, ino, size, mode,
 *             owner, times): the worker checks what it opens against it
 *             (see Safety) and takes the metadata from fstat of what it
 *             opened, as cp -a does.  Without -n or a progress line,
 *             a regular file goes unstat'ed (ENT_NOSTAT: type and ino
 *             from readdir, dev the directory's): the worker's fstat is
 *             the only one (with -u, its fstatat of the name, which
 *             decides -u), and a file that is hard-linked, over
 *             BATCH_BYTES or not what readdir said comes back (R_RESTAT)
 *             for the parent to stat and queue as before.  Small files are
 *             batched (BATCH_FILES, BATCH_BYTES) so that round-trips do not
 *             dominate on trees of many small files.
 *   MSG_DONE  worker -> parent: the job is finished; `count` reports
 *             (struct rep) name the entries that failed, were skipped or
 *             deserve a warning; every other entry was copied.  `bytes`
 *             were written in all (a report says how many of them were for
 *             its entry), in `ns` nanoseconds: the progress line learns
 *             from that what a file and a byte cost (see "progress").
 * At most QDEPTH jobs are in flight per worker, so neither side can fill
 * the other's socket buffer and block: no deadlock.  The dispatcher gives
 * a worker jobs from a directory it already works in, else from one no
 * other worker is in, so workers rarely contend for one directory.
 * Besides the channel, each worker has a slot in a shared memory page
 * (struct wstat) where it posts which entry of which job it is on and how
 * many bytes it has written; the parent reads it for the progress line,
 * for SIGUSR1, and to know which entry a dead worker was copying.
 *
 * The walk.  The parent reads directories with openat/getdents64/fstatat
 * from descriptors, depth first.  Each directory gets a struct dir that
 * holds its source and destination descriptors and a count of what is
 * still pending inside it (the walk itself, jobs, subdirectories, hard
 * links waiting).  When that count drops to zero the directory is complete
 * and the parent gives it its owner, mode, xattrs and times: directory
 * metadata is applied after the contents, so read-only directories can be
 * filled and their mtimes stay.  Descriptors are budgeted (fd_budget:
 * the limit less what is open, one channel per worker, FD_SPARE); a tree
 * deeper than the budget allows parks ancestors (dir_park: what is left
 * of the listing is kept in memory, descriptors closed) and reopens them
 * by path from the top, checked, when it needs them again.  The queue of
 * jobs is bounded (QMAX); the walk pauses while it is full, so memory does
 * not grow with the tree.
 * With a progress line, a census child (census_start) walks SOURCE a
 * second time, read-only, with stat, beside the walk, and posts the files
 * and bytes it counted to a shared page (struct census), so the line has
 * real totals long before the main walk ends (until then it says
 * "scanning" rather than show a percentage of a partial total).  It never
 * prints, ignores SIGINT and SIGHUP, gets SIGKILL if the parent dies, and
 * is killed and reaped when the walk ends or the run stops (census_stop).
 *
 * Filters.  --exclude/--include (in order, first match wins, patterns
 * matched as rsync matches them: filter_out), -x and
 * --shard decide in the walk (and the census) what is entered or queued;
 * --shard hashes a non-directory's inode number, which readdir gives, so
 * other shards' entries are passed over without a stat;
 * --files-from replaces reading the top directory by reading the list,
 * entering parent directories as needed; -n prints what the walk finds
 * instead of queueing it, and starts no workers.  -u, -c, --verify and
 * --fsync act in the workers, per file, and -u and --fsync in the parent
 * too (hard links already in place are skipped; directories are synced
 * after their metadata).  -c: a file -u would skip is compared byte for
 * byte with its copy, and copied again if it differs.
 *
 * Deleting (--delete).  The parent does it all, by name relative to
 * held directory descriptors.  Before the walk reads a SOURCE directory
 * whose DEST counterpart existed, it lists the DEST names (struct dnames);
 * the walk marks each name SOURCE has and the filters keep.  When the
 * directory is finished (dir_finish), before its metadata, the unmarked
 * names go: files and symlinks by unlinkat (a symlink is never followed),
 * directories depth first (del_tree: O_NOFOLLOW, not across a DEST mount
 * point).  A name of another type than in SOURCE goes as the walk meets
 * it, so the copy can take its place.  Nothing is deleted in a directory
 * whose SOURCE listing was not read completely, none after an EIO, ENOSPC
 * or a signal (del_ok), and none with --files-from, --shard or a SOURCE
 * inside DEST (refused).
 *
 * Hard links.  Entries with st_nlink > 1 go through a (dev, ino) table in
 * the parent.  The first name is copied; later names wait until that copy
 * is reported done and are then link()ed by the parent.  EMLINK: the name
 * is copied instead, with a warning.
 *
 * Metadata.  Symlinks and special files are never opened for reading:
 * source and copy are opened O_PATH | O_NOFOLLOW and checked (see Safety),
 * and their owner, mode and times are set through that descriptor, their
 * xattrs read and set through /proc/self/fd/N of it (xa_op; without /proc,
 * by the name it had after checking it still names that inode, with the
 * *xattrat calls of Linux 6.13, xa_byname).  Each xattr DEST refuses, and
 * root's refused chown, travel up in the entry's report (W_*) and are
 * named by the parent: lost metadata is never silent.  Where DEST's
 * directory has a default ACL (JF_DACL), workers remove the ACLs new
 * entries inherit and set every mode; directories DEST had before get
 * SOURCE's owner and lose the xattrs SOURCE's lack (dir_finish).
 *
 * Files.  A worker opens the source (O_NOATIME where allowed: reading
 * writes nothing to SOURCE), creates the copy unnamed (O_TMPFILE) in its
 * destination directory, copies the data (copy_file_range, read/write
 * fallback; sparse files cloned, or their data extents read with
 * SEEK_DATA/SEEK_HOLE and blocks of zeros left as holes; the copy is what
 * was read, never padded), sets owner, xattrs, mode and times in that
 * order (chown clears set-uid bits and capabilities; user.* xattrs need a
 * writable inode, so the mode comes after them; setting an ACL sets the
 * mode bits too; times go last), and only then links it under its name; a
 * name that exists already is replaced by linking to a hidden name and
 * rename().  Where O_TMPFILE cannot be linked (no /proc, no capability)
 * the file is written under a hidden name ".pcopy-tmp.<pid>.<n>" and
 * renamed into place.  A hidden name of a regular file is flock()ed right
 * after it is created (tmp_create) or, when it is a second link made to
 * replace a name, before it appears (tmp_commit, link_replace); a later
 * run into the same directory removes those no lock holds (left by a
 * killed run); a worker whose new name was swept in the instant before
 * its lock makes another.  So a name in DEST is always a complete
 * file.  A large file is copied by one worker: writes to one inode
 * serialize on its lock, and splitting files across workers measured no
 * faster on every local file system here (version 0.1 did it on network
 * file systems only, where it could not be measured; it was removed).
 *
 * Safety.  pcopy is often run as root on trees that other users can
 * write (home directories, containers' volumes).  The rule: every system
 * call that changes DEST or reads SOURCE acts on a descriptor pcopy holds,
 * or on a name inside a directory descriptor with O_NOFOLLOW or
 * AT_SYMLINK_NOFOLLOW; every descriptor opened for an entry the walk saw
 * is checked with fstat (type, dev, ino) against what the walk saw before
 * anything of it is trusted, and its metadata is taken from that fstat;
 * a mismatch is named "changed during copy" and the entry is not copied
 * (exit 1), never copied with another file's metadata.  (A file the walk
 * did not stat, ENT_NOSTAT, is checked against readdir's type and inode
 * number; on a mismatch it goes back to the parent, which stats it as it
 * is then, as if the walk had come later, and it is checked again.)  Directories the
 * parent makes, and nodes a worker makes (mknodat and symlinkat give no
 * descriptor), are opened right after, O_PATH | O_NOFOLLOW for nodes, and
 * checked to be new (owner: new files' owner in DEST, g.newuid; nodes: one
 * link, the type and device numbers made); their owner, mode and times
 * are then set through that descriptor (fchownat/fchmodat2/utimensat with
 * AT_EMPTY_PATH; /proc/self/fd on kernels before 6.6).  DEST itself is
 * never followed if it is a symlink.  Nodes are made with no permission
 * bits, which come after the owner.  Every entry written in a directory
 * that has a default ACL, or that is someone else's (who may add one at
 * any moment), loses the ACLs SOURCE lacks.  Hidden files are created 0600; a
 * directory or file in DEST whose group is not ours (set-gid, grpid) is
 * always chowned.  The by-name calls that remain, and why each is safe:
 *   mkdirat, mknodat, symlinkat, O_CREAT|O_EXCL openat: create, never
 *       follow; what they made is opened and checked, as above.
 *   openat(O_NOFOLLOW [|O_DIRECTORY|O_PATH]): opens the entry itself;
 *       checked with fstat before use.
 *   fstatat(AT_SYMLINK_NOFOLLOW): the walk and -u read, change nothing.
 *   renameat, linkat (no AT_SYMLINK_FOLLOW), unlinkat: act on names in a
 *       held directory; never follow.  A user who can write that DEST
 *       directory can replace what they put there, and gains nothing that
 *       writing the directory did not give.  (The parent's hard links
 *       link the inode at the first name: such a user could substitute a
 *       file of their own there, which keeps their owner.)
 *   linkat(AT_FDCWD, "/proc/self/fd/N", AT_SYMLINK_FOLLOW): follows the
 *       magic link of pcopy's own descriptor, i.e. that very inode.
 *   open_beneath (hard links, parked directories): one component at a
 *       time with O_NOFOLLOW from a held descriptor; parked directories
 *       are checked by (dev, ino) when reopened.
 *   xa_byname: only where /proc is missing, and only in SOURCE: the
 *       xattrs of a symlink or node are read by name (AT_SYMLINK_NOFOLLOW)
 *       right after checking that the name is still the inode of the held
 *       O_PATH descriptor.  In DEST they are never set by name: without
 *       /proc they are named as not copied.
 *   open, mkdir, lstat on SOURCE and DEST as given, and on their parents
 *       in single-file mode: the user's own paths, resolved once at the
 *       start (SOURCE's top is checked against its lstat).
 *
 * Failures.  A worker that dies (end of file on its channel) is reaped and
 * named on stderr; the jobs it held go back to the front of the queue and a
 * new worker takes its slot, and what it was writing is swept (tmp_sweep).
 * Jobs are idempotent, so redoing one is safe.  The shared page tells
 * which entry it was on; after MAX_DEATHS deaths on the same job that
 * entry is dropped as failed; a job that kills MAX_DEATHS workers before
 * they record it fails whole, and MAX_DEATHS * (N + 1) deaths in a row
 * with no job finished stop the copy: a respawn loop is impossible.  If
 * no worker is left and none can be forked, the copy stops (at the start:
 * as many workers as fork allows, at least one, else exit 2).  ENOSPC,
 * EDQUOT or EROFS (on data, mkdir or link) stops dispatching: one message,
 * the queue and the batches being filled are dropped, in-flight jobs finish.
 *
 * Errors, in three tiers.  die(): a usage or setup error before any
 * worker starts; nothing was copied; exit 2.  outcome(): the one place
 * an entry is decided -- copied, skipped, failed (named on stderr with
 * the reason) or dropped (not copied because the run is stopping) -- and
 * counted; the walk counts each entry it finds once, so the ledger found
 * = copied + skipped + failed + dropped holds by construction.  fatal():
 * an error that stops the run midway (no memory, poll failing, a worker
 * breaking the protocol): named, then the workers are stopped and reaped
 * as on a signal, the summary printed, exit 1.  Workers never print and
 * never exit(): they report errno values up the channel and leave with
 * _exit().
 *
 * How a run ends.  When the walk is done, the queue empty and no job in
 * flight (so every directory is complete), the next SOURCE of -t DIR
 * SOURCE... is set up and walked with the same workers (all were checked
 * before the first was copied; one that cannot be set up fails alone,
 * named, as with cp: setup_fail).  After the last, the parent shuts the job
 * side of every channel; workers read end of file and _exit(0); the
 * parent reads end of file on each result side and reaps each pid.  It
 * then checks that the top directory was finished and the ledger.
 * SIGINT, SIGTERM, SIGHUP (workers ignore SIGINT and SIGHUP, so a ^C in
 * a terminal reaches only the parent's logic; the parent keeps SIGINT and
 * SIGHUP ignored if it started with them ignored): the parent stops the
 * walk, sends SIGTERM to every worker (each abandons its file, which being
 * unnamed simply vanishes), reaps them all, prints the summary and dies of
 * the same signal (the shell sees 128+signal).  A second signal sends
 * SIGKILL instead.  If the parent dies, workers get SIGTERM
 * (PR_SET_PDEATHSIG) or end of file and exit.
 *
 * Reading order.  The sections below follow one file: utilities and
 * messages; the ledger (outcome); the tree walk (walk_step, walk_entry,
 * dir_enter), hard links (hl_entry) and the census; jobs and the queue
 * (batch_add, job_queue); dispatch and results (dispatch, wk_input,
 * job_done, rep_outcome); finished directories and --delete (dir_put,
 * dir_finish, del_dir); the copy engine and the worker (wk_main, wk_job,
 * copy_reg: tmp_create, copy_range or copy_sparse, meta_owner, xattr_copy,
 * meta_mode, meta_times, tmp_commit; copy_node); the worker pool; the
 * progress line; the main loop (run, shutdown_workers); options (usage,
 * parse_args); setup (sources_check, setup_top: setup_tree or setup_file,
 * wk_start); main (main, copy_one).  Functions used before their
 * definition are declared in one block after the globals.
 *
 * Exit status: 0 everything copied; 1 some entries failed or were not
 * copied (each failure, or what stopped the run, was named on stderr); 2
 * usage or setup error, nothing copied; 128+n killed by signal n.
 */

#define _GNU_SOURCE /* O_TMPFILE, copy_file_range, SEEK_DATA, fdopendir, AT_EMPTY_PATH */

#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VERSION "0.1"

#ifndef FICLONE                 /* <linux/fs.h>, which musl does not include */
#define FICLONE _IOW(0x94, 9, int)
#endif

/* -- tunables -- */

#define QDEPTH 2                /* jobs in flight per worker: one working, one waiting */
#define WORKER_NICE 5           /* workers' nice value above the parent's (see wk_main) */
#define QMAX 256                /* queued jobs before the walk pauses (bounds memory) */
#define BATCH_FILES 32          /* entries per job: amortises a round-trip over ~1 ms of work */
#define BATCH_BYTES (1 << 20)   /* bytes per job: a big file travels alone */
#define MSG_MAX (32 << 10)      /* largest message: far below the socket buffer (~200 KiB) */
#define MSG_FDS 2               /* descriptors a job carries: source and DEST directory */
#define DREAD_BUF (8 << 10)     /* bytes per getdents64 call of the walk */
#define COPY_CHUNK (8 << 20)    /* bytes per copy call: bounds how long ^C waits */
#define BUF_SIZE (128 << 10)    /* read/write fallback buffer */
#define AFFINITY_SCAN 64        /* queued jobs dispatch looks through for a good one */
#define MAX_DEATHS 3            /* a job that kills this many workers fails its entry */
#define FD_SPARE 8              /* descriptors the parent opens for a moment:
				   at most 3 at once (a hard link, a reopened
				   directory), twice over for safety */
#define TICK_MS 100             /* progress refresh: 10 times a second at most */
#define LOG_MAX_MS 30000        /* --progress to a file: a line every 1 s, backing off to this */
#define PROGRESS_TAU 20.0       /* s: the time model forgets what it saw this long ago */
#define PRIOR_CF 1e-4           /* s of worker time per file, until measured ... */
#define PRIOR_CB 1e-3           /* ... and per MB (1 GB/s): guesses of the right size */
#define PRIOR_S 0.001           /* ... which weigh as much as 1 ms of copying at those costs */
#define HL_MIN 64               /* initial hard link table size (power of two) */
#define TMP_PREFIX ".pcopy-tmp."  /* hidden names: TMP_PREFIX "<pid>.<n>" */
#define TMP_NAME_MAX 48         /* room for one, with its NUL */

/* Errors of DEST as a whole: the first stops the copy (dest_full) */
#define DEST_STOPS(e) ((e) == ENOSPC || (e) == EDQUOT || (e) == EROFS)

/* -- types -- */

enum { MSG_JOB = 1, MSG_DONE };

struct msg {                    /* header of every message, both ways */
	uint32_t type;          /* MSG_JOB or MSG_DONE */
	uint32_t id;            /* job id, echoed in the result */
	uint32_t len;           /* bytes after the header */
	uint32_t count;         /* entries (job) or reports (result) */
	uint32_t flags;         /* JF_* (job) */
	uint64_t bytes;         /* data bytes written (result) */
	uint64_t ns;            /* time the worker spent on the job (result) */
};

enum {
	JF_SGID = 1,            /* job: destination dir is set-gid: always chown */
	JF_DACL = 2,            /* job: destination dir has a default ACL, or
				 * its owner (not us) may add one: new entries
				 * lose ACL entries SOURCE lacks, modes all set */
};

struct ent {                    /* one entry of a job; name follows, NUL-ended */
	uint64_t size;          /* st_size as the walk saw it */
	uint64_t blocks;        /* st_blocks (512-byte units): the sparse hint */
	uint64_t dev, ino;      /* source identity (hard links, xattr cache) */
	uint64_t rdev;          /* devices */
	int64_t atime, mtime;   /* seconds */
	uint32_t atime_ns, mtime_ns;
	uint32_t mode, uid, gid;
	uint16_t flags;         /* ENT_* */
	uint16_t namelen;       /* source name length, without NUL */
	uint16_t dnamelen;      /* destination name length, 0: same name */
	uint16_t pad;
};

enum {
	ENT_HLFIRST = 1,        /* first name of a hard link group: report to the table */
	ENT_DROP = 2,           /* parent gave up on this entry: worker skips it */
	ENT_NOSTAT = 4,         /* readdir said regular, the walk did not stat it: only
				 * ino and dev are known (walk_nostat) */
};

#define XNAME_MAX 56            /* bytes of an xattr name a report carries */

struct rep {                    /* one report in a result */
	uint32_t idx;           /* entry index in the job */
	uint32_t what;          /* R_* */
	int32_t err;            /* errno, if any */
	uint32_t warn;          /* W_*: copied, but not all of its metadata */
	uint64_t val;           /* R_CHANGED: bytes actually copied */
	uint64_t wrote;         /* bytes written for this entry (not copied if it failed) */
	int32_t xerr;           /* W_XATTR: why */
	int32_t oerr;           /* W_OWNER: why */
	char xname[XNAME_MAX];  /* W_XATTR: the first xattr not copied */
};

enum {
	W_XATTR = 1,            /* an xattr could not be set (or a stale one removed) */
	W_OWNER = 2,            /* root could not chown (no CAP_CHOWN, unmapped id) */
};

enum {
	R_FAIL_SRC = 1,         /* reading the source failed: name the source */
	R_FAIL_DST,             /* writing DEST failed: name the destination */
	R_VANISHED,             /* source gone before it could be copied */
	R_CHANGED,              /* copied, but the size changed while copying */
	R_SKIP,                 /* -u: destination already up to date */
	R_BADCOPY,              /* --verify: the copy differs from the source */
	R_RACED,                /* another file took the name (val 1: in DEST): not copied */
	R_RESTAT,               /* ENT_NOSTAT, but hard-linked, large or on another
				 * device: not copied; the parent stats and queues it */
};

struct xref {                   /* an inode whose metadata is read or set */
	int fd;                 /* open descriptor, or -1: */
	int dirfd;              /* ... the entry `name` in dirfd, never followed */
	const char *name;       /* (symlinks, FIFOs, sockets, devices) */
	int pfd;                /* O_PATH descriptor of it (old kernels), or -1 */
	int adirfd;             /* name "": dirfd is an O_PATH descriptor, and */
	const char *aname;      /* (adirfd, aname) names it where /proc is missing */
	char proc[32];          /* "/proc/self/fd/<pfd>" */
};

struct dir {                    /* a directory being copied (parent only) */
	struct dir *up;         /* parent directory, NULL for the top */
	int sfd, dfd;           /* source and destination descriptors */
	struct dread *ds;       /* open while the walk reads it (on sfd) */
	char *rel;              /* path below SOURCE, "" for the top */
	struct stat st;         /* source stat: metadata applied at the end */
	unsigned pending;       /* walk + jobs + subdirs + link waiters */
	struct job *batch;      /* job being filled from this directory */
	uint32_t jflags;        /* JF_* for jobs in this directory */
	int owner;              /* worker with jobs of it in flight, -1: none */
	unsigned busy;          /* jobs of it in flight */
	int nometa;             /* single-file mode: DEST's parent, leave alone */
	int existed;            /* DEST had it before: its owner and xattrs
				 * are someone else's until dir_finish */
	struct dnames *dn;      /* --delete: DEST's names before the copy, NULL: none */
	int partial;            /* --delete: SOURCE's listing was not read completely */
	struct dir *lnext, *lprev;      /* --files-from: list of unfinished dirs */
	int parked;             /* sfd, dfd (and ds) closed to save descriptors */
	int gone;               /* parked, and could not be reopened: named */
	char **rest;            /* parked while read: the names still to walk */
	size_t nrest, irest;
	uint64_t ddev, dino;    /* DEST's identity, to check it when reopened */
};

struct dname {                  /* one name found in a DEST directory (parent only) */
	char *name;             /* NULL: free slot */
	unsigned char type;     /* DT_DIR, DT_REG, ...: what DEST has under it */
	unsigned char seen;     /* SOURCE has it too (and it is not excluded) */
};

struct dnames {                 /* --delete: a DEST directory's names, open addressing */
	struct dname *tab;
	size_t size, used;      /* size: a power of two */
};

enum {                          /* what of an entry's path a rule is matched against */
	RM_NAME,                /* no '/' and no "**": the name */
	RM_PATH,                /* a leading '/' or "**": the whole path below SOURCE */
	RM_TAIL,                /* a '/' inside, no "**": its last nslash + 1 components */
	RM_ANY                  /* "**" inside: the path from its start or any '/' on */
};

struct drec {                   /* a record of getdents64 */
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

struct dread {                  /* the walk's reading of a SOURCE directory (parent) */
	struct dread *next;     /* free list (rd_open) */
	long len, pos;          /* bytes in buf, offset of the next record */
	uint64_t buf[DREAD_BUF / 8];    /* getdents64 records, aligned */
};

struct rule {                   /* an --exclude or --include pattern */
	const char *pat;        /* without its leading '/' and trailing '/' */
	int incl;               /* 1: --include, 0: --exclude */
	int dironly;            /* it ended in '/': directories only */
	int how;                /* RM_*, as rsync decides it */
	int nslash;             /* RM_TAIL: how many '/' pat has */
	int wild;               /* it has '*', '?' or '[' (else compared as is) */
	int slash1;             /* RM_PATH, pat starts with "**": the path gets a '/' before it */
	int dirall;             /* pat ends in "/ ***": a directory's path gets a '/' after it */
};

struct job {                    /* a message waiting for, or at, a worker (parent only) */
	struct job *next;       /* queue link */
	struct dir *dir;        /* holds one reference on it */
	char *buf;              /* struct msg + entries: sent as is, resent on retry */
	size_t len, cap;
	uint32_t id;
	uint32_t nent;
	uint64_t bytes;         /* sum of entry sizes, for progress */
	unsigned deaths;        /* workers that died on it */
};

struct wstat {                  /* shared page slot, written by the worker */
	volatile uint32_t job;  /* id of the job in progress, 0 idle */
	volatile uint32_t idx;  /* entries of it finished */
	volatile uint64_t bytes;/* bytes of it written so far */
	volatile int64_t since; /* ms (monotonic) when entry idx began */
};

struct worker {                 /* a worker slot (parent only) */
	pid_t pid;              /* 0: no process */
	int fd;                 /* parent end of the channel, -1 if none */
	struct job *fly[QDEPTH];/* jobs sent, oldest first */
	unsigned nfly;
	int broken;             /* a send failed: wait for its end of file */
	uint32_t pjob, pidx;    /* progress: job and entry the last tick saw */
	uint64_t pbytes;        /* ... and the job's bytes then */
	uint32_t fedjob;        /* job the ticks learned from so far, 0: none */
	double fed_n, fed_b, fed_t;     /* ... files, MB and s of it they learned */
	double acc_n, acc_b, acc_t;     /* ... and what they saw since, not learned yet */
};

struct waiter {                 /* a hard link name waiting for its first copy */
	struct waiter *next;
	struct dir *dir;        /* holds one reference */
	char *name;
};

struct hl {                     /* one hard-linked inode (parent only) */
	uint64_t dev, ino;      /* dev == 0 && ino == 0: free slot */
	int state;              /* HL_* */
	char *path;             /* first name, relative to DEST */
	struct waiter *wait;
};

enum { HL_PENDING = 1, HL_DONE, HL_FAILED };

enum {                          /* what became of an entry: see outcome() */
	OUT_COPIED, OUT_SKIPPED, OUT_DROPPED, OUT_FAIL_SRC, OUT_FAIL_DST,
	OUT_NEW = 0x100,        /* also count it as found */
	OUT_NAMED = 0x200,      /* a failure the caller has named already */
	OUT_FLAGS = OUT_NEW | OUT_NAMED,
};

struct census {                 /* shared page: the census child's totals */
	volatile uint64_t files, bytes; /* counted so far */
	volatile int done;      /* set last: the whole tree was read */
};

struct cframe {                 /* a directory the census is reading (census child) */
	struct cframe *up;
	DIR *ds;
	char *rel;              /* path below SOURCE */
};

enum { TMP_EMPTY = 1, TMP_PROC, TMP_NAMED };    /* how files get their name */
enum { DS_SWEEP = 1, DS_LIST = 2, DS_REWIND = 4 };      /* dest_scan: what for */

static struct {
	/* options: set by parse_args in the parent before the fork, read by all */
	unsigned jobs;          /* -j */
	int quiet, verbose;     /* -q, -v */
	int progress;           /* 1: terminal line, 2: plain lines, 0: none */
	int update;             /* -u: skip files already up to date */
	int verify;             /* --verify: compare before naming */
	int fsync;              /* --fsync: sync files and directories */
	int dryrun;             /* -n: change nothing, say what would happen */
	int onefs;              /* -x: stay on SOURCE's file system */
	struct rule *rules;     /* --exclude/--include, in order: the first match decides */
	unsigned nrules;
	char *fpath;            /* filter_out's path buffer, '/' PATH '/' (parent only) */
	size_t fpath_cap;
	int del;                /* --delete: remove what SOURCE lacks (2: --delete-excluded) */
	int checksum;           /* -c: -u also compares the contents of files that match */
	const char *target;     /* -t DIR, NULL if not given */
	char **srcs;            /* the SOURCE operands */
	int nsrc;
	int dst_shown;          /* pcopy chose DEST's name: the summary says it */
	unsigned shard_k, shard_n;      /* --shard K/N, 0/0: all */
	FILE *list;             /* --files-from stream, NULL: walk the tree */
	int listsep;            /* '\n', or '\0' with -0 */
	dev_t rootdev;          /* SOURCE's device, for -x */
	/* set up by main and setup before the fork, read by all */
	const char *src, *dst;  /* as given (for messages) */
	int tmpmode;            /* TMP_*: how workers name new files */
	int64_t mwindow;        /* -u: ns of mtime DEST's file system may lose */
	uid_t euid;
	gid_t egid;
	uid_t newuid;           /* owner that new files get in DEST (tmp_probe) */
	/* parent only (workers inherit a copy and never read it) */
	struct worker *wk;      /* -j slots */
	struct wstat *slot;     /* shared page: worker i posts in slot[i] */
	struct job *qhead, *qtail;
	unsigned nqueued;
	uint32_t nextid;
	struct dir *cur;        /* directory the walk is reading now */
	struct dir *root;       /* the top of the tree: never parked */
	struct dir *live;       /* --files-from: every unfinished directory */
	int walking;            /* the walk is not finished */
	int stop;               /* stop dispatching: signal or full disk */
	int sigpipe[2];         /* self-pipe: signal handler -> poll */
	int dstfd;              /* DEST top directory */
	int fdlimit;            /* descriptors the walk may hold */
	int fdopen;             /* descriptors the walk holds */
	struct hl *hl;          /* hard link table, open addressing */
	size_t hlsize, hlused;
	int full;               /* ENOSPC/EDQUOT seen */
	int nodel;              /* --delete: deletions stopped (I/O error, ENOSPC, failure) */
	int outerr;             /* errno of a failed flush of stdout, 0 if none */
	int statall;            /* the walk stats every file (see walk_nostat) */
	uint64_t nnostat, nrestat;      /* files queued unstat'ed; hard links among them */
	unsigned barren;        /* workers died since a job was last finished */
	/* the ledger (parent only): see outcome() */
	uint64_t found, copied, failed, skipped, dropped;
	uint64_t ndirs, bytes_found, bytes_done, bytes_skipped;
	uint64_t deleted;       /* --delete: DEST entries removed (or, -n, to remove) */
	uint64_t bytes_lost;    /* written for entries that failed: work, not copies */
	int status;             /* exit status so far */
	int rootdone;           /* the top directory was finished */
	char *cbuf;             /* -n -c: the parent's compare buffer (BUF_SIZE) */
	/* progress (parent only) */
	int64_t t0;             /* ms at start */
	int64_t tlast;          /* ms of the last progress line */
	double pct_shown;       /* the percent never goes backwards */
	int line_shown;         /* length of the progress line on screen, 0: none */
	pid_t cen_pid;          /* the census child, 0: none */
	struct census *cs;      /* its totals (shared page) */
	struct cframe *cen;     /* census child: directory being read, NULL when over */
	uint64_t cen_files, cen_bytes;  /* census child: totals so far */
	int cen_done;           /* census child: it read the whole tree */
	int counted;            /* totals: 1 final, -1 "scanning" was shown, 0 neither yet */
	int vclear;             /* -v names and the progress line share a terminal */
	/* the time model (parent only): worker-seconds = files * cf + MB * cb (see model_solve) */
	double m_nn, m_nb, m_bb, m_nt, m_bt;    /* decayed sums of the normal equations */
	double cf, cb;          /* learned: s per file, s per MB of worker time */
	double wrate;           /* smoothed work done per second (worker-s/s) */
	int64_t m_tlast;        /* ms of the last decay */
	unsigned long m_seen;   /* observations so far */
} g;

static volatile sig_atomic_t got_sig;   /* parent: first signal; worker: SIGTERM */
static volatile sig_atomic_t got_usr1;
static volatile sig_atomic_t got_winch; /* parent: the terminal was resized */
static int in_worker;                   /* this process is a worker or the census */

/* -- state and constants of the sections below -- */

static struct {                 /* worker-only state */
	int sock;               /* channel to the parent */
	struct wstat *ws;       /* this worker's shared slot */
	char *buf;              /* read/write fallback buffer */
	char tmpname[TMP_NAME_MAX];     /* hidden name being written, "" if none */
	int tmpdir;             /* ... and the directory it is in */
} w;

#ifndef SYS_setxattrat          /* Linux 6.13; libcs have no numbers for them yet */
#if defined(__alpha__)
#define SYS_setxattrat -1       /* (alpha numbers them apart: use the fallback) */
#define SYS_getxattrat -1
#define SYS_listxattrat -1
#define SYS_removexattrat -1
#else
#define SYS_setxattrat 463      /* the same number on every other architecture */
#define SYS_getxattrat 464
#define SYS_listxattrat 465
#define SYS_removexattrat 466
#endif
#endif

struct xattr_args0 {            /* struct xattr_args of <linux/xattr.h>, version 0 */
	uint64_t value;
	uint32_t size;
	uint32_t flags;
};

enum { XA_LIST, XA_GET, XA_SET, XA_REMOVE };

static int xa_noat;             /* no *xattrat syscalls: use /proc/self/fd */

enum { XS_ADD, XS_ACL, XS_ALL };        /* what xattr_copy removes */

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452       /* Linux 6.6; the same number on every architecture */
#endif

enum { PF_FILES, PF_PCT, PF_BYTES, PF_RATE, PF_ETA, PF_N };

enum {                          /* long options without a short form */
	OPT_PROGRESS = 256, OPT_VERIFY, OPT_FSYNC, OPT_EXCLUDE, OPT_FILES_FROM,
	OPT_SHARD, OPT_DELETE, OPT_DELETE_EXCLUDED, OPT_EXCLUDE_FROM, OPT_INCLUDE,
	OPT_INCLUDE_FROM,
};

/* -- functions used before their definition -- */

static void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static struct xref xref_of(int fd, int dirfd, const char *name);
static ssize_t xa_op(struct xref *x, int op, const char *name, void *buf, size_t n);
static int xattr_copy(struct xref *src, struct xref *dst, int sync, struct rep *r);
static int meta_owner(struct xref *x, const struct ent *e, int always_chown,
    mode_t *mode, struct rep *r);
static int meta_mode(struct xref *x, const struct ent *e, mode_t mode, int created_mode);
static int meta_times(int fd, int dirfd, const char *name, const struct ent *e);
static int same_content(int in, int dfd, const char *dname, uint64_t size, char *buf);
static int node_same(int dfd, const char *dname, const struct ent *e,
    const char *target, size_t n);
static int wk_spawn(unsigned i);
static int wk_reap(unsigned i);
static void wk_signal(int sig);
static struct dname *dn_find(struct dnames *dn, const char *name);
static void dn_add(struct dnames *dn, const char *name, unsigned char type);
static void dn_failed(const struct dir *d, int err);
static void dn_free(struct dnames *dn);
static int del_ok(void);
static void del_check(int err);
static int del_entry(struct dir *d, const char *name, unsigned char type);
static void dir_put(struct dir *d);
static void batch_flush(struct dir *d);
static void batch_add(struct dir *d, const char *name, const char *dname,
    const struct stat *st, int flags);
static int hl_entry(struct dir *d, const char *name, const struct stat *st);
static void job_queue(struct job *j, int front);
static void dest_full(int err);
static void job_fail(struct job *j, const char *why);
static void census_run(int sfd);
static void census_step(void);
static void census_stop(void);
static void model_job(unsigned i, const struct msg *m);
static void progress_clear(void);
static void summary(const char *how);
static void shutdown_workers(void);
static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void warn_path(int fail, const char *path, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

/* -- utilities -- */

/*
 * Fatal setup error: message, exit 2.  Parent only, before any worker is
 * started, so nothing has been copied; after that, fatal().  (A SOURCE
 * of -t that cannot be set up goes to setup_fail instead.)
 */
static void
die(const char *fmt, ...)
{
	va_list ap;

	if (g.wk != NULL) {
		char msg[1024];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		fatal("%s", msg);
	}
	fputs("pcopy: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* A line on stderr, "pcopy: " fmt tail, off the progress line.  Parent. */
static void
say_v(const char *fmt, va_list ap, const char *tail)
{
	progress_clear();
	fputs("pcopy: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(tail, stderr);
	fputc('\n', stderr);
}

/*
 * Fatal error in the middle of a run (no memory, poll failing, a worker
 * breaking the protocol): say it, stop the workers as a signal would (the
 * files they were writing vanish), reap them, print the summary and exit 1.
 * What was copied is complete; the rest is not copied.  Parent only.
 */
static void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say_v(fmt, ap, "; stopping");
	va_end(ap);
	g.stop = 1;
	wk_signal(SIGTERM);
	shutdown_workers();
	summary("stopped: ");
	exit(1);
}

/*
 * Out of memory: die() before the workers start, fatal() after.  Worker
 * code does not come here (it reports ENOMEM for the entry); if it ever
 * did, the worker leaves silently and the parent names its death.
 */
static void
nomem(void)
{
	if (in_worker)
		_exit(3);
	if (g.wk)
		fatal("out of memory");
	die("out of memory");
}

/* Print a one-line message about an entry and remember the failure. */
static void
warn_path(int fail, const char *path, const char *fmt, ...)
{
	va_list ap;

	progress_clear();
	fprintf(stderr, "pcopy: '%s': ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (fail && g.status == 0)
		g.status = 1;
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		nomem();
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL)
		nomem();
	return p;
}

/* strdup, or no memory. */
static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		nomem();
	return p;
}

/* Join up to three path parts with '/', skipping empty ones; malloc'd. */
static char *
path_join(const char *a, const char *b, const char *c)
{
	const char *part[3] = { a, b, c };
	size_t n = 1;
	char *s, *p;
	int i;

	for (i = 0; i < 3; i++)
		n += part[i] ? strlen(part[i]) + 1 : 0;
	p = s = xmalloc(n);
	for (i = 0; i < 3; i++) {
		if (part[i] == NULL || part[i][0] == '\0')
			continue;
		if (p != s && p[-1] != '/')
			*p++ = '/';
		p = stpcpy(p, part[i]);
	}
	*p = '\0';
	return s;
}

/* Milliseconds on the monotonic clock. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nanoseconds on the monotonic clock: how long a job took (workers). */
static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Format a byte count as "12.3 MB" into buf. */
static const char *
fmt_bytes(char *buf, size_t n, double v)
{
	static const char *unit[] = { "B", "kB", "MB", "GB", "TB", "PB" };
	int u = 0;

	while (v >= 1000 && u < 5) {
		v /= 1000;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

/*
 * The bytes a copy of a regular file will write: its size, or for a
 * sparse file (fewer blocks than its size) the data its blocks hold, as
 * only data extents are copied.  The progress totals and -n use it.
 */
static uint64_t
data_bytes(uint64_t size, uint64_t blocks)
{
	return blocks * 512 < size ? blocks * 512 : size;
}

/* close() that keeps errno: used on cleanup paths. */
static void
close_keep(int fd)
{
	int e = errno;

	if (fd >= 0)
		close(fd);
	errno = e;
}

/*
 * A new hidden name, TMP_PREFIX "<pid>.<n>", in buf: unique to this
 * process (the pid) and this call (n).  Parent and workers, each with its
 * own sequence.  Returns buf.
 */
static char *
tmp_name(char *buf, size_t n)
{
	static unsigned seq;

	snprintf(buf, n, TMP_PREFIX "%ld.%u", (long)getpid(), seq++);
	return buf;
}

/*
 * Open the directory at a relative path below dirfd one component at a
 * time, refusing symlinks, so that neither PATH_MAX nor a swapped-in
 * symlink matters.  Returns a descriptor or -1 with errno set.
 */
static int
open_beneath(int dirfd, const char *rel)
{
	char *copy = strdup(rel), *p, *save = NULL;
	int fd, nfd;

	if (copy == NULL)
		return -1;
	fd = dup(dirfd);
	for (p = strtok_r(copy, "/", &save); fd >= 0 && p; p = strtok_r(NULL, "/", &save)) {
		nfd = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close_keep(fd);
		fd = nfd;
	}
	free(copy);
	return fd;
}

/*
 * openat() with O_NOATIME where the kernel allows it (the owner, or
 * root); once refused to a non-root user (files of others), *noatime
 * stops asking.
 */
static int
noatime_openat(int dirfd, const char *name, int flags, int *noatime)
{
	int fd;

	fd = openat(dirfd, name, flags | *noatime);
	if (fd < 0 && errno == EPERM && *noatime) {
		fd = openat(dirfd, name, flags);
		if (fd >= 0 && g.euid != 0)
			*noatime = 0;
	}
	return fd;
}

/*
 * openat() for something of SOURCE that will be read (files, directories):
 * reading then writes nothing to the source and its access times stay.
 * Parent and workers.
 */
static int
src_openat(int dirfd, const char *name, int flags)
{
	static int noatime = O_NOATIME;

	return noatime_openat(dirfd, name, flags, &noatime);
}

/*
 * openat() for a directory of DEST: its listings (the sweep, --delete)
 * then leave the atime dir_finish compares.  Apart from src_openat: a DEST
 * directory of someone else's must not stop SOURCE's O_NOATIME.  Parent.
 */
static int
dst_openat(int dirfd, const char *name, int flags)
{
	static int noatime = O_NOATIME;

	return noatime_openat(dirfd, name, flags, &noatime);
}

/* -- messages and entries (both sides) -- */

/*
 * Send one message with up to MSG_FDS descriptors attached.  Both sides
 * use it.  Returns 0, or -1 with errno (EPIPE: the peer is gone).
 */
static int
msg_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(MSG_FDS * sizeof(int))];
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t n;

	if (nfds > 0) {
		memset(cbuf, 0, sizeof cbuf);
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR && !got_sig);
	return n == (ssize_t)len ? 0 : -1;
}

/*
 * Receive one message into buf (cap bytes) and up to MSG_FDS descriptors
 * into fds (set to -1 when absent).  Returns its length, 0 at end of file,
 * -1 on error (EINTR is returned to the caller, which checks its flags;
 * EPROTO for a message or descriptor list that did not fit: running a job
 * against the wrong directories is worse than losing the worker).
 */
static ssize_t
msg_recv(int sock, void *buf, size_t cap, int *fds)
{
	char cbuf[CMSG_SPACE(MSG_FDS * sizeof(int))];
	struct iovec iov = { buf, cap };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	struct cmsghdr *c;
	ssize_t n;

	fds[0] = fds[1] = -1;
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return n;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len - CMSG_LEN(0) <= MSG_FDS * sizeof(int))
			memcpy(fds, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0));
	if (n < (ssize_t)sizeof(struct msg) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		close_keep(fds[0]);
		close_keep(fds[1]);
		fds[0] = fds[1] = -1;
		errno = EPROTO;
		return -1;
	}
	return n;
}

/* An entry record from what fstatat said; names are set by the caller. */
static void
ent_fill(struct ent *e, const struct stat *st)
{
	memset(e, 0, sizeof *e);
	e->size = st->st_size;
	e->blocks = st->st_blocks;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->rdev = st->st_rdev;
	e->atime = st->st_atim.tv_sec;
	e->atime_ns = st->st_atim.tv_nsec;
	e->mtime = st->st_mtim.tv_sec;
	e->mtime_ns = st->st_mtim.tv_nsec;
	e->mode = st->st_mode;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
}

/*
 * An ENT_NOSTAT entry e, now stat'ed (st): must it go back to the parent
 * (R_RESTAT in *r, -1)?  When it is not what readdir said (val 1:
 * changed, a file mounted over it, or a file system whose d_ino is not
 * st_ino), a hard link (val 2: the parent's table) or a file that should
 * travel alone (0): the parent stats it and queues it as the walk would.
 * 0 for any other entry.  Workers.
 */
static int
nostat_back(const struct stat *st, const struct ent *e, struct rep *r)
{
	int other = (st->st_mode & S_IFMT) != (e->mode & S_IFMT) ||
	    st->st_dev != e->dev || st->st_ino != e->ino;

	if (!(e->flags & ENT_NOSTAT) || (!other && st->st_nlink <= 1 && st->st_size <= BATCH_BYTES))
		return 0;
	r->what = R_RESTAT;
	r->val = other ? 1 : st->st_nlink > 1 ? 2 : 0;
	r->err = 0;
	return -1;
}

/*
 * A descriptor opened for entry e: is it still the inode the walk saw
 * (type, device, inode)?  If so, *m is e's record with the owner, mode and
 * times of fstat -- what the copy gets, as cp -a takes them from the file
 * it reads -- and 0 is returned.  If not: R_RACED in *r (or R_FAIL_SRC
 * when fstat fails), -1.  An ENT_NOSTAT entry takes its size from fstat
 * too, and comes back as R_RESTAT if it needs what the walk's stat would
 * have told.  The fstat goes to *stp too, if stp.  Workers.  (m's names
 * are not copied: use e's.)
 */
static int
ent_check(int fd, const struct ent *e, struct ent *m, struct rep *r, struct stat *stp)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		r->what = R_FAIL_SRC;
		r->err = errno;
		return -1;
	}
	if (nostat_back(&st, e, r) < 0)
		return -1;
	if ((st.st_mode & S_IFMT) != (e->mode & S_IFMT) || st.st_dev != e->dev ||
	    st.st_ino != e->ino) {
		r->what = R_RACED;
		r->err = 0;
		return -1;
	}
	*m = *e;
	if (e->flags & ENT_NOSTAT) {    /* what was read is what is copied */
		m->size = st.st_size;
		m->blocks = st.st_blocks;
	}
	m->mode = st.st_mode;
	m->uid = st.st_uid;
	m->gid = st.st_gid;
	m->atime = st.st_atim.tv_sec;
	m->atime_ns = st.st_atim.tv_nsec;
	m->mtime = st.st_mtim.tv_sec;
	m->mtime_ns = st.st_mtim.tv_nsec;
	if (stp)
		*stp = st;
	return 0;
}

/* Size of an entry record with its names, rounded to 8 bytes. */
static size_t
ent_size(const struct ent *e)
{
	size_t n = sizeof *e + e->namelen + 1;

	if (e->dnamelen)
		n += e->dnamelen + 1;
	return (n + 7) & ~(size_t)7;
}

static char *
ent_name(const struct ent *e)
{
	return (char *)(e + 1);
}

/* The name the entry gets in DEST. */
static char *
ent_dname(const struct ent *e)
{
	return e->dnamelen ? ent_name(e) + e->namelen + 1 : ent_name(e);
}

/* -- the ledger: what became of each entry (parent side) -- */

/*
 * Source and destination paths of an entry, for messages (malloc'd).  In
 * single-file mode (the top's rel is NULL) SOURCE and DEST name the file.
 */
static char *
src_path(const struct dir *d, const char *name)
{
	if (d && d->rel == NULL)
		name = NULL;
	return path_join(g.src, d ? d->rel : NULL, name);
}

static char *
dst_path(const struct dir *d, const char *name)
{
	if (d && d->rel == NULL)
		name = NULL;
	return path_join(g.dst, d ? d->rel : NULL, name);
}

static void
warn_entry(int fail, int dst, const struct dir *d, const char *name, int err)
{
	char *p = dst ? dst_path(d, name) : src_path(d, name);

	warn_path(fail, p, "%s", strerror(err));
	free(p);
	del_check(err);
}

/*
 * Record what became of one entry: the one place the ledger is kept.
 * Every entry the walk counts as found ends here exactly once, as copied,
 * skipped, failed or dropped, so that at the end found = copied + skipped
 * + failed + dropped.  OUT_NEW: the entry is decided as it is found (it
 * is counted found here too).  A failure is printed with `why` (NULL:
 * strerror(errno)), naming the source path (OUT_FAIL_SRC) or the
 * destination path (OUT_FAIL_DST), or with d NULL the name as given
 * (OUT_NAMED: the caller has named it); with -v a copied entry is printed
 * on stdout.  Parent only.
 */
static void
outcome(int out, const struct dir *d, const char *name, const char *why)
{
	char *p;
	int err;

	if (out & OUT_NEW)
		g.found++;
	switch (out & ~OUT_FLAGS) {
	case OUT_COPIED:
		g.copied++;
		if (g.verbose && !g.dryrun) {
			p = path_join(d ? d->rel : NULL, name, NULL);
			if (g.vclear)
				progress_clear();
			printf("%s\n", p);
			free(p);
		}
		break;
	case OUT_SKIPPED:
		g.skipped++;
		break;
	case OUT_DROPPED:
		g.dropped++;
		break;
	default:
		err = why ? 0 : errno;
		g.failed++;
		if (out & OUT_NAMED) {
			g.status = 1;
		} else {
			if (why == NULL)
				why = strerror(errno);
			if (d == NULL)          /* not below SOURCE: as given */
				p = xstrdup(name);
			else if ((out & ~OUT_FLAGS) == OUT_FAIL_DST)
				p = dst_path(d, name);
			else
				p = src_path(d, name);
			warn_path(1, p, "%s", why);
			free(p);
		}
		del_check(err);         /* --delete: EIO stops deletions */
		break;
	}
}

/*
 * Name what a copied entry (name in d; NULL: d itself) lost of its
 * metadata (W_* in r): one line each, exit status 1.  Parent.
 */
static void
rep_warn(const struct dir *d, const char *name, const struct rep *r)
{
	char *p;

	if (r->warn == 0)
		return;
	p = dst_path(d, name);
	if (r->warn & W_OWNER)
		warn_path(1, p, "failed to preserve ownership: %s", strerror(r->oerr));
	if ((r->warn & W_XATTR) && r->xname[0] == '\0')
		warn_path(1, p, "extended attributes not copied: %s", strerror(r->xerr));
	else if (r->warn & W_XATTR)
		warn_path(1, p, "extended attribute '%.*s' not copied: %s",
		    XNAME_MAX - 1, r->xname, strerror(r->xerr));
	free(p);
}

/* -- tree walk (parent side) -- */

/*
 * Does DEST directory dfd have a default ACL?  Then what is created in it
 * inherits ACL entries, and modes narrowed by them, that SOURCE may lack:
 * the workers then set every mode and remove such ACLs.  Parent.
 */
static int
dacl_has(int dfd)
{
	return fgetxattr(dfd, "system.posix_acl_default", NULL, 0) > 0;
}

/*
 * The JF_* flags of jobs into DEST directory dfd (its fstat in dst; made:
 * this run made it).  Files made in it get its group when it is set-gid
 * (or on a grpid mount): then no chown can be skipped as "already right"
 * (JF_SGID).  A default ACL makes new entries inherit ACLs SOURCE lacks;
 * one its owner may add while we copy (a directory DEST had, not ours)
 * counts as there: its entries always lose such ACLs (JF_DACL).  Parent.
 */
static uint32_t
dest_jflags(int dfd, const struct stat *dst, int made)
{
	uint32_t f = 0;

	if ((dst->st_mode & S_ISGID) || dst->st_gid != g.egid)
		f |= JF_SGID;
	if ((!made && dst->st_uid != g.euid) || dacl_has(dfd))
		f |= JF_DACL;
	return f;
}

/*
 * --files-from: the unfinished directory `name` of up, if the list was in
 * it before (lists need not be sorted).  Going back into it, rather than
 * entering it anew, gives it its metadata once, after all its entries: a
 * read-only directory is not finished while more is copied into it.
 */
static struct dir *
dir_live(struct dir *up, const char *name)
{
	struct dir *d;
	size_t k = strlen(up->rel);

	for (d = g.live; d; d = d->lnext)
		if (d->up == up && strcmp(d->rel + k + (k > 0), name) == 0)
			return d;
	return NULL;
}

/*
 * The walk reads a SOURCE directory with getdents64 on the descriptor it
 * holds (d->sfd), DREAD_BUF bytes a call: no second descriptor, as
 * fdopendir takes, no fstat and fcntl to set it up, and 4 times fewer
 * calls than musl's 2 KiB readdir on large directories.  A buffer is held
 * for each directory being read (at most one per descriptor the budget
 * allows); finished ones wait on a short free list.  Parent.
 */
static struct dread *rd_free;
static unsigned rd_nfree;

static struct dread *
rd_open(void)
{
	struct dread *rd = rd_free;

	if (rd) {
		rd_free = rd->next;
		rd_nfree--;
	} else {
		rd = xmalloc(sizeof *rd);
	}
	rd->len = rd->pos = 0;
	return rd;
}

static void
rd_close(struct dread *rd)
{
	if (rd_nfree >= 8) {
		free(rd);
		return;
	}
	rd->next = rd_free;
	rd_free = rd;
	rd_nfree++;
}

/* The next record of rd, reading fd; NULL at the end (errno 0) or on an error. */
static struct drec *
rd_next(struct dread *rd, int fd)
{
	struct drec *de;

	if (rd->pos >= rd->len) {
		rd->pos = 0;
		rd->len = syscall(SYS_getdents64, fd, rd->buf, sizeof rd->buf);
		if (rd->len <= 0) {
			if (rd->len == 0)
				errno = 0;
			rd->len = 0;
			return NULL;
		}
	}
	de = (struct drec *)((char *)rd->buf + rd->pos);
	rd->pos += de->reclen;
	return de;
}

/* Is name "." or ".."? */
static int
dot_or_dotdot(const char *n)
{
	return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

/* Close d's source and destination descriptors, if open.  Parent. */
static void
dir_close(struct dir *d)
{
	if (d->sfd >= 0) {
		close(d->sfd);
		g.fdopen--;
	}
	if (d->dfd >= 0) {
		close(d->dfd);
		g.fdopen--;
	}
}

/*
 * Descriptors run short (a tree deeper than the budget allows): close
 * those of directory d, an ancestor of where the walk is, keeping what is
 * left of its listing in memory (d->rest) so that the walk can come back
 * to it.  dir_unpark reopens them when they are needed.  Parent.
 */
static void
dir_park(struct dir *d)
{
	struct drec *de;

	if (d->ds) {
		while ((de = rd_next(d->ds, d->sfd)) != NULL) {
			if (dot_or_dotdot(de->name))
				continue;
			if ((d->nrest & (d->nrest - 1)) == 0 || d->nrest == 0)
				d->rest = xrealloc(d->rest, (d->nrest ? 2 * d->nrest : 1) * sizeof *d->rest);
			if ((d->rest[d->nrest++] = strdup(de->name)) == NULL)
				die("out of memory");
		}
		if (errno) {
			d->partial = 1;
			warn_entry(1, 0, d, NULL, errno);
		}
		rd_close(d->ds);
		d->ds = NULL;
		if (d->rest == NULL)
			d->rest = xmalloc(sizeof *d->rest);     /* read, and empty */
	}
	dir_close(d);
	d->sfd = d->dfd = -1;
	d->parked = 1;
}

/*
 * Reopen the descriptors of a parked directory, one component at a time
 * from the top (no symlink followed), and check that each is still the
 * directory it was.  If not, or it cannot be opened, name it: what was
 * left to walk in it is not copied, nor its metadata set.  Returns 0 or -1.
 */
static int
dir_unpark(struct dir *d)
{
	struct stat st;
	int sfd, dfd = -1, dst = d->ddev || d->dino;
	const char *why = NULL;

	if (d->gone)
		return -1;      /* its jobs fail, never run without descriptors */
	if (!d->parked)
		return 0;
	d->parked = 0;
	sfd = open_beneath(g.root->sfd, d->rel);
	if (dst && sfd >= 0)
		dfd = open_beneath(g.root->dfd, d->rel);
	if (sfd < 0 || (dst && dfd < 0))
		why = strerror(errno);
	else if (fstat(sfd, &st) < 0 || st.st_dev != d->st.st_dev || st.st_ino != d->st.st_ino ||
	    (dst && (fstat(dfd, &st) < 0 || st.st_dev != d->ddev || st.st_ino != d->dino)))
		why = "changed during copy (another directory took its name); not copied";
	if (why) {
		char *p = src_path(d, NULL);

		warn_path(1, p, "%s", why);
		free(p);
		close_keep(sfd);
		close_keep(dfd);
		d->nometa = 1;
		d->gone = 1;
		d->partial = 1;         /* --delete: its listing is lost */
		while (d->irest < d->nrest)
			free(d->rest[d->irest++]);
		return -1;
	}
	d->sfd = sfd;
	d->dfd = dfd;
	g.fdopen += dst ? 2 : 1;
	return 0;
}

/*
 * The walk holds more descriptors than its budget: park the ancestors of
 * the directory it reads, from the top down, until it is back within it.
 * Returns 1 if that freed any.  Parent.
 */
static int
dir_park_some(void)
{
	struct dir *d, *best;
	int freed = 0;

	while (g.fdopen >= g.fdlimit) {
		best = NULL;
		for (d = g.cur ? g.cur->up : NULL; d && d != g.root; d = d->up)
			if (!d->parked && d->busy == 0)
				best = d;       /* the one nearest the top */
		if (best == NULL)
			break;
		dir_park(best);
		freed = 1;
	}
	return freed;
}

/*
 * Is the hidden name ".pcopy-tmp.<pid>.<n>" one whose maker is gone (no
 * such process here)?  For symlinks and device nodes, which carry no lock.
 * (A pcopy on another host writing to the same network DEST is not seen:
 * its hidden nodes live for microseconds, and one taken fails its entry.)
 */
static int
tmp_orphan(const char *name)
{
	char *end;
	long pid = strtol(name + sizeof TMP_PREFIX - 1, &end, 10);

	return pid > 0 && *end == '.' && kill(pid, 0) < 0 && errno == ESRCH;
}

/*
 * A hidden temporary `name` in DEST directory dfd, left by a pcopy (or
 * worker) that was killed: remove it.  A regular one that a live pcopy
 * holds is locked and stays; other types stay while the pid in their name
 * lives.  Parent.
 */
static void
tmp_take(int dfd, const char *name)
{
	struct stat st;
	int fd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (!S_ISREG(st.st_mode)) {
		if (!S_ISDIR(st.st_mode) && tmp_orphan(name))
			unlinkat(dfd, name, 0);
		return;
	}
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	/* only regular files carry the lock; the others are left */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0)
		unlinkat(dfd, name, 0);
	close(fd);
}

/*
 * Read the names of DEST directory dfd (of d) once, for what needs them:
 * DS_SWEEP removes the hidden temporaries killed runs left (tmp_take);
 * DS_LIST returns the other names for --delete (struct dnames; NULL after
 * naming a failure: then nothing is deleted there), before the walk reads
 * d's SOURCE counterpart; DS_REWIND first (the descriptor was read
 * before).  Sweeping and listing together cost the calls of one listing
 * (rd_next, as the walk reads SOURCE).
 * (--shard runs leave the sweep to the final pass, which is not sharded:
 * every shard reads every directory.)  Parent.
 */
static struct dnames *
dest_scan(const struct dir *d, int dfd, int how)
{
	struct dnames *dn = NULL;
	struct dread *rd;
	struct drec *de;
	struct stat st;

	if (how & DS_LIST) {
		dn = xmalloc(sizeof *dn);
		memset(dn, 0, sizeof *dn);
	}
	if ((how & DS_REWIND) && lseek(dfd, 0, SEEK_SET) < 0) {
		if (dn)
			dn_failed(d, errno);
		dn_free(dn);
		return NULL;
	}
	rd = rd_open();
	while ((de = rd_next(rd, dfd)) != NULL) {
		if (dot_or_dotdot(de->name))
			continue;
		if (strncmp(de->name, TMP_PREFIX, sizeof TMP_PREFIX - 1) == 0) {
			if (how & DS_SWEEP)
				tmp_take(dfd, de->name);
			continue;
		}
		if (dn == NULL)
			continue;
		if (de->type == DT_UNKNOWN) {
			if (fstatat(dfd, de->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;       /* gone already */
			de->type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
		}
		dn_add(dn, de->name, de->type);
	}
	if (errno && dn) {
		dn_failed(d, errno);
		dn_free(dn);
		dn = NULL;
	}
	rd_close(rd);
	return dn;
}

/* Sweep DEST directory dfd, read before (a worker that died wrote there). */
static void
tmp_sweep(int dfd)
{
	dest_scan(NULL, dfd, DS_SWEEP | DS_REWIND);
}

/*
 * Create (or open, when merging) the destination directory `name` in up,
 * open the source one, and return a new struct dir holding one reference
 * for the caller, or NULL after naming the failure.  The copy is created
 * 0700 so it can be filled whatever its final mode, which comes in
 * dir_finish.  With `read` the walk will read it (d->ds); without, it is
 * only a mount point (-x) or a parent of listed paths (--files-from).
 */
static struct dir *
dir_enter(struct dir *up, const char *name, const struct stat *st, int read)
{
	struct dir *d;
	struct stat dst, now;
	int sfd, dfd = -1, made = 0;
	uint32_t jflags = 0;

	if (!g.dryrun && g.update && up->dfd >= 0 && (dfd = dst_openat(up->dfd, name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		/* -u: DEST has it already, most of the time: no mkdirat */
	} else if (!g.dryrun) {
		made = mkdirat(up->dfd, name, 0700) == 0;
		if (!made && DEST_STOPS(errno)) {
			dest_full(errno);
			outcome(OUT_DROPPED | OUT_NEW, up, name, NULL);
			return NULL;
		}
		if (!made && errno != EEXIST) {
			outcome(OUT_FAIL_DST | OUT_NEW, up, name, NULL);
			return NULL;
		}
	}
	if (up->dfd >= 0) {
		if (dfd < 0)
			dfd = dst_openat(up->dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		/* -n --delete: walk_entry said it would delete what is there */
		if (dfd < 0 && g.dryrun && (errno == ENOTDIR || errno == ELOOP) && del_ok())
			errno = ENOENT;
		if (dfd < 0 && !(g.dryrun && errno == ENOENT)) {
			outcome(OUT_FAIL_DST | OUT_NEW, up, name, errno == ENOTDIR || errno == ELOOP ?
			    "cannot overwrite non-directory with directory" : NULL);
			return NULL;
		}
		if (dfd >= 0 && (fstat(dfd, &dst) < 0 || (made && dst.st_uid != g.newuid))) {
			/* made, then another directory took the name: not ours */
			outcome(OUT_FAIL_DST | OUT_NEW, up, name, made ? "changed during copy "
			    "(another directory took its name); not copied" : NULL);
			close(dfd);
			return NULL;
		}
		if (dfd >= 0)
			g.fdopen++;
		if (dfd >= 0 && !g.dryrun)
			jflags = dest_jflags(dfd, &dst, made);
	}
	d = xmalloc(sizeof *d);
	memset(d, 0, sizeof *d);
	d->up = up;
	d->dfd = dfd;
	d->sfd = -1;
	d->owner = -1;
	d->st = *st;
	d->jflags = jflags;
	if (dfd >= 0) {
		d->ddev = dst.st_dev;
		d->dino = dst.st_ino;
	}
	d->rel = path_join(up->rel, name, NULL);
	d->pending = 1;
	up->pending++;
	if (g.list) {
		d->lnext = g.live;
		if (g.live)
			g.live->lprev = d;
		g.live = d;
	}
	g.ndirs++;
	if (g.dryrun && dfd < 0)
		printf("create %s/\n", d->rel);
	else if (g.verbose && !g.dryrun) {
		if (g.vclear)
			progress_clear();
		printf("%s\n", d->rel);
	}
	if (!made && dfd >= 0 && !g.dryrun) {
		/* ours but read-only (finished already, when a --files-from
		 * list comes back to it): open it up until dir_finish */
		if (g.euid != 0 && dst.st_uid == g.euid && (dst.st_mode & S_IRWXU) != S_IRWXU)
			fchmod(dfd, (dst.st_mode & 07777) | S_IRWXU);
		d->existed = 1;
	}
	sfd = src_openat(up->sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd >= 0 && fstat(sfd, &now) == 0 && (now.st_dev != st->st_dev ||
	    now.st_ino != st->st_ino)) {
		/* another directory took the name since the walk's fstatat */
		outcome(OUT_FAIL_SRC | OUT_NEW, up, name,
		    "changed during copy (another directory took its name); not copied");
		close(sfd);
		dir_put(d);
		return NULL;
	}
	if (sfd >= 0)
		d->st = now;    /* what is applied: fstat of what is read, as cp */
	if (sfd < 0) {
		/* unreadable: it stays an empty directory with its metadata */
		outcome(OUT_FAIL_SRC | OUT_NEW, up, name, NULL);
		if (d->existed && !g.shard_n)
			dest_scan(d, dfd, DS_SWEEP);
		if (g.del && dfd >= 0 && !made) {
			char *p = dst_path(d, NULL);

			warn_path(1, p, "SOURCE directory not read: nothing deleted in it");
			free(p);
		}
		close_keep(sfd);
		dir_put(d);
		return NULL;
	}
	d->sfd = sfd;
	g.fdopen++;
	if (read)
		d->ds = rd_open();
	if ((d->existed && !g.shard_n) || (g.del && read && dfd >= 0 && !made))
		d->dn = dest_scan(d, dfd, (d->existed && !g.shard_n ? DS_SWEEP : 0) |
		    (g.del && read && dfd >= 0 && !made ? DS_LIST : 0));
	return d;
}

/* 64-bit FNV-1a: a hash that is the same on every machine and run. */
static uint64_t
fnv1a(const void *p, size_t n, uint64_t h)
{
	const unsigned char *c = p;

	while (n-- > 0)
		h = (h ^ *c++) * 0x100000001b3ULL;
	return h;
}

/*
 * --shard: is the non-directory with inode number ino in this run's
 * shard?  The inode, not the path: readdir gives it (d_ino), so the walk
 * can pass over other shards' entries without a stat (N shards cost
 * little more than one walk), and all names of a hard-linked inode fall
 * in one shard.  d_ino and st_ino agree except for a file bind-mounted
 * over another (d_ino names the hidden one): such a file may be copied by
 * two shards (each atomically) or by none, and then by the final -u.
 * Parent.
 */
static int
shard_mine(uint64_t ino)
{
	/* splitmix64's finalizer: every bit of ino moves every bit of the
	 * result, so inode numbers allocated with a stride (2, 4, ... as
	 * when files are made in turn in several directories) still spread
	 * evenly; computed on the value, not its bytes: the same on every
	 * machine whatever its byte order */
	ino ^= ino >> 30;
	ino *= 0xbf58476d1ce4e5b9ULL;
	ino ^= ino >> 27;
	ino *= 0x94d049bb133111ebULL;
	ino ^= ino >> 31;
	return ino % g.shard_n == g.shard_k - 1;
}

/*
 * Does c match the bracket expression p (just after its '['), as in
 * rsync: '!' or '^' first negates, a ']' first is literal, "a-z" is a
 * range, "[:alpha:]" a class (ASCII, as rsync's ctype in the C locale),
 * '\' quotes.  Sets *end after its ']', or to NULL if it has none (then
 * nothing matches, as in rsync).  Parent.
 */
static int
wild_class(const char *p, unsigned char c, const char **end)
{
	static const struct {
		const char *name;
		int (*is)(int);
	} cls[] = {
		{ "alnum", isalnum }, { "alpha", isalpha }, { "blank", isblank },
		{ "cntrl", iscntrl }, { "digit", isdigit }, { "graph", isgraph },
		{ "lower", islower }, { "print", isprint }, { "punct", ispunct },
		{ "space", isspace }, { "upper", isupper }, { "xdigit", isxdigit },
	};
	int neg = 0, hit = 0, first = 1;
	unsigned char lo, hi;
	size_t i, n;

	*end = NULL;
	if (*p == '!' || *p == '^') {
		neg = 1;
		p++;
	}
	for (; *p != '\0' && (*p != ']' || first); first = 0) {
		if (p[0] == '[' && p[1] == ':') {
			const char *e = strstr(p + 2, ":]");

			if (e == NULL)
				return 0;
			n = (size_t)(e - p - 2);
			for (i = 0; i < sizeof cls / sizeof cls[0]; i++)
				if (strlen(cls[i].name) == n && memcmp(cls[i].name, p + 2, n) == 0)
					break;
			if (i == sizeof cls / sizeof cls[0])
				return 0;       /* no such class: rsync matches nothing */
			hit |= c < 128 && cls[i].is(c);
			p = e + 2;
			continue;
		}
		if (*p == '\\' && p[1] != '\0')
			p++;
		lo = hi = (unsigned char)*p++;
		if (p[0] == '-' && p[1] != '\0' && p[1] != ']') {
			p++;
			if (*p == '\\' && p[1] != '\0')
				p++;
			hi = (unsigned char)*p++;
		}
		hit |= lo <= c && c <= hi;
	}
	if (*p != ']')
		return 0;
	*end = p + 1;
	return hit != neg;
}

/*
 * Match the text t..e (not NUL-terminated) against the wildcard pattern
 * p, as rsync's wildmatch does: '?', '*' and "[...]" never match '/',
 * "**" (or more stars) matches anything; '\' quotes the next character.
 * Returns WM_MATCH, WM_NO, or one of two cuts that keep many stars from
 * trying every split: WM_ABORT (the text ran out: no later start of an
 * enclosing star can match either) and WM_SLASH (a '*' met a '/': only
 * an enclosing "**" may go on).  Parent.
 */
enum { WM_NO, WM_MATCH, WM_ABORT, WM_SLASH };

static int
wild_match(const char *p, const char *t, const char *e)
{
	const char *q;
	int r, any;

	for (; *p != '\0'; p++, t++) {
		if (t == e && *p != '*')
			return WM_ABORT;
		switch (*p) {
		case '?':
			if (*t == '/')
				return WM_NO;
			break;
		case '[':
			r = wild_class(p + 1, (unsigned char)*t, &q);
			if (q == NULL)
				return WM_ABORT;        /* no ']': nothing matches */
			if (!r || *t == '/')
				return WM_NO;
			p = q - 1;
			break;
		case '*':
			any = p[1] == '*';
			while (p[1] == '*')
				p++;
			if (*++p == '\0')       /* a star at the end */
				return any || memchr(t, '/', (size_t)(e - t)) == NULL ?
				    WM_MATCH : WM_NO;
			for (;; t++) {
				r = wild_match(p, t, e);
				if (r != WM_NO && (!any || r != WM_SLASH))
					return r;
				if (t == e)
					return WM_ABORT;
				if (!any && *t == '/')
					return WM_SLASH;
			}
		case '\\':
			if (p[1] != '\0')
				p++;
			/* fall through */
		default:
			if (*t != *p)
				return WM_NO;
		}
	}
	return t == e ? WM_MATCH : WM_NO;
}

/*
 * Does rule r match the text t..e: by wild_match or, without wildcards,
 * as it is?  Parent.
 */
static int
rule_match(const struct rule *r, const char *t, const char *e)
{
	if (!r->wild)
		return (size_t)(e - t) == strlen(r->pat) && memcmp(t, r->pat, (size_t)(e - t)) == 0;
	return wild_match(r->pat, t, e) == WM_MATCH;
}

/*
 * Is the entry `name` in directory rel (below SOURCE) filtered out?  The
 * --exclude and --include rules are tried in order and the first that
 * matches decides, as in rsync; no match: it is wanted.  Each rule is
 * matched against what rsync matches it against (RM_*, rule_add); a rule
 * that ended in '/' matches directories only.  The path is built once,
 * in a buffer kept between calls, and only if a rule needs it: this runs
 * on every name the walk and the census meet.  Parent only.
 */
static int
filter_out(const char *rel, const char *name, int isdir)
{
	size_t nl = strlen(name), rl = rel ? strlen(rel) : 0;
	const char *path = NULL, *end = NULL, *t;
	unsigned i;
	int k;

	for (i = 0; i < g.nrules; i++) {
		const struct rule *r = &g.rules[i];
		int hit = 0;

		if (r->dironly && !isdir)
			continue;
		if (r->how == RM_NAME) {
			hit = rule_match(r, name, name + nl);
			goto decided;
		}
		if (path == NULL) {     /* "/rel/name/": a '/' either side, for slash1 and dirall */
			if (g.fpath_cap < rl + nl + 4) {
				g.fpath_cap = 2 * (rl + nl + 4);
				g.fpath = xrealloc(g.fpath, g.fpath_cap);
			}
			g.fpath[0] = '/';
			if (rl > 0) {
				memcpy(g.fpath + 1, rel, rl);
				g.fpath[++rl] = '/';
			}
			memcpy(g.fpath + 1 + rl, name, nl);
			g.fpath[1 + rl + nl] = '/';
			path = g.fpath + 1;
			end = path + rl + nl;
		}
		switch (r->how) {
		case RM_PATH:
			hit = rule_match(r, path - r->slash1, end + (r->dirall && isdir));
			break;
		case RM_TAIL:           /* from the nslash + 1-th '/' from the end */
			for (t = end, k = r->nslash + 1; t > path && (t[-1] != '/' || --k > 0); t--)
				;
			hit = rule_match(r, t, end);
			break;
		case RM_ANY:            /* from the start or after any '/' */
			for (t = path; t != NULL && !hit; t = memchr(t, '/', (size_t)(end - t))) {
				t += t != path;
				hit = wild_match(r->pat, t, end + (r->dirall && isdir)) == WM_MATCH;
			}
			break;
		}
decided:
		if (hit)
			return !r->incl;
	}
	return 0;
}

/*
 * Filters shared by the walk and the census: the rules (filter_out), and
 * --shard on non-directories: a stable hash of the path, or of the inode
 * number for hard-linked files so a whole group falls in one shard.
 */
static int
wanted(const char *rel, const char *name, const struct stat *st)
{
	if (filter_out(rel, name, S_ISDIR(st->st_mode)))
		return 0;
	if (g.shard_n == 0 || S_ISDIR(st->st_mode))
		return 1;
	return shard_mine(st->st_ino);
}

/*
 * -n -u: a file whose size and mtime match is skipped; with -c only if its
 * bytes match too (the parent compares: -n starts no workers).
 */
static int
dry_same(struct dir *d, const char *name, const struct stat *st)
{
	int in, ret;

	if (!g.checksum)
		return 1;
	if (g.cbuf == NULL)
		g.cbuf = xmalloc(BUF_SIZE);
	in = src_openat(d->sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0)
		return 0;
	ret = same_content(in, d->dfd, name, st->st_size, g.cbuf);
	close(in);
	return ret < 0;
}

/* -n: say what would happen to a non-directory; change nothing. */
static void
dry_entry(struct dir *d, const char *name, const struct stat *st)
{
	struct stat ds;
	const char *what = "create";
	char *p = path_join(d->rel, name, NULL);

	if (d->dfd >= 0 && fstatat(d->dfd, name, &ds, AT_SYMLINK_NOFOLLOW) == 0) {
		what = "replace";
		if (g.update && S_ISREG(st->st_mode) && S_ISREG(ds.st_mode) &&
		    ds.st_size == st->st_size && ds.st_mtim.tv_sec == st->st_mtim.tv_sec &&
		    ds.st_mtim.tv_nsec == st->st_mtim.tv_nsec)
			what = dry_same(d, name, st) ? "skip" : "replace";
		if (g.update && !S_ISREG(st->st_mode)) {
			char target[PATH_MAX + 1];
			ssize_t n = S_ISLNK(st->st_mode) ?
			    readlinkat(d->sfd, name, target, sizeof target - 1) : 0;
			struct ent e;

			ent_fill(&e, st);
			if (n >= 0 && node_same(d->dfd, name, &e, target, (size_t)n))
				what = "skip";
		}
	}
	printf("%s %s\n", what, p);
	free(p);
	if (what[0] == 's') {
		outcome(OUT_SKIPPED, d, name, NULL);
	} else {
		outcome(OUT_COPIED, d, name, NULL);
		g.bytes_done += S_ISREG(st->st_mode) ? data_bytes(st->st_size, st->st_blocks) : 0;
	}
}

/*
 * One entry found by the walk (or listed by --files-from) in d: enter a
 * directory, or queue, link or (with -n) describe anything else.
 */
static void
walk_entry(struct dir *d, const char *name, const struct stat *st)
{
	struct dir *sub;
	struct dname *dn;

	if (!wanted(d->rel, name, st))
		return;
	if (d->dn && (dn = dn_find(d->dn, name)) != NULL) {
		dn->seen = 1;
		/* --delete: a directory replaces a non-directory and vice versa */
		if ((dn->type == DT_DIR) != !!S_ISDIR(st->st_mode) && del_ok())
			del_entry(d, name, dn->type);
	}
	if (S_ISDIR(st->st_mode)) {
		int read = !g.onefs || st->st_dev == g.rootdev;

		sub = dir_enter(d, name, st, read);
		if (sub && read)
			g.cur = sub;
		else if (sub)
			dir_put(sub);   /* -x: a mount point stays an empty directory */
		return;
	}
	g.found++;              /* decided once, in outcome() */
	if (g.dryrun)
		dry_entry(d, name, st);
	else if (st->st_nlink <= 1 || hl_entry(d, name, st))
		batch_add(d, name, NULL, st, st->st_nlink > 1 ? ENT_HLFIRST :
		    st->st_nlink == 0 ? ENT_NOSTAT : 0);
}

/*
 * May the walk queue a regular file that readdir found without a stat?
 * Then the worker's fstat of the file it opens (which the safety rule
 * needs anyway) is the only one: a stat less per file.  What the walk's
 * stat served: hard links (st_nlink), sizes (batches, progress), the
 * device.  The worker sends back (R_RESTAT) a file that is hard-linked,
 * larger than BATCH_BYTES or on another device, and walk_restat stats and
 * queues it as before.  With -u the worker stats the name itself (-u
 * decides before any open) and checks that stat as it would its fstat: a
 * mirror's re-run then costs the parent no stat per file.  Not with -n
 * (prints) or a progress line (totals); nor after a file was not what
 * readdir said (g.statall: a race, a file mounted over another, or a
 * file system whose d_ino is not st_ino, as FUSE's may be), or once 1 in
 * 16 came back hard-linked (a tree of hard links: each would cost a
 * round trip more than its stat).  Parent.
 */
static int
walk_nostat(void)
{
	return !g.dryrun && !g.progress && !g.statall;
}

/*
 * R_RESTAT: an entry queued without a stat (ENT_NOSTAT) that the worker
 * found hard-linked, large or on another device: stat it now and queue it
 * as walk_entry would have.  It was counted found already.  Parent.
 */
static void
walk_restat(struct dir *d, const char *name)
{
	struct stat st;

	if (g.stop) {
		outcome(OUT_DROPPED, d, name, NULL);
		return;
	}
	if (dir_unpark(d) < 0) {
		outcome(OUT_FAIL_SRC, d, name, "its directory could not be reopened");
		return;
	}
	if (fstatat(d->sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		outcome(OUT_FAIL_SRC, d, name,
		    errno == ENOENT ? "vanished before it could be copied" : NULL);
		return;
	}
	/* another file took the name: not copied, as when the walk's own
	 * fstatat comes before the swap; with --shard, a file of another
	 * shard's (by its inode) is that shard's to copy, never both's */
	if (!S_ISREG(st.st_mode) || (g.shard_n && !shard_mine(st.st_ino))) {
		outcome(OUT_FAIL_SRC, d, name,
		    "changed during copy (another file took its name); not copied");
		return;
	}
	if (st.st_nlink <= 1 || hl_entry(d, name, &st))
		batch_add(d, name, NULL, &st, st.st_nlink > 1 ? ENT_HLFIRST : 0);
	batch_flush(d);
}

/* fstatat for the walk; names a failure and counts it.  Returns 0 or -1. */
static int
walk_stat(struct dir *d, const char *name, struct stat *st)
{
	if (fstatat(d->sfd, name, st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	outcome(OUT_FAIL_SRC | OUT_NEW, d, name,
	    errno == ENOENT ? "vanished before it could be copied" : NULL);
	return -1;
}

/* Leave the directory the walk is in: it has nothing more to queue. */
static void
walk_pop(void)
{
	struct dir *d = g.cur;

	batch_flush(d);
	if (d->ds) {
		rd_close(d->ds);
		d->ds = NULL;
	}
	g.cur = d->up;  /* depth first: the parent is still being read */
	dir_put(d);
	if (g.cur)
		dir_unpark(g.cur);
}

/*
 * --files-from: make the walk's chain of directories end at `par` (a
 * path below SOURCE, "" for the top): leave those that are not its
 * parents, enter the missing ones one component at a time.  Returns 0, or
 * -1 if a component could not be entered (named and counted).  Parent.
 */
static int
list_enter(const char *par)
{
	struct stat st;
	struct dir *d;
	char *comp;
	size_t k;

	for (;;) {
		k = strlen(g.cur->rel);
		if (k == 0 || (strncmp(g.cur->rel, par, k) == 0 && (par[k] == '/' || par[k] == '\0')))
			break;
		walk_pop();
	}
	while (strcmp(g.cur->rel, par) != 0) {
		k = strlen(g.cur->rel);
		comp = xstrdup(par + k + (k > 0));
		if (strchr(comp, '/'))
			*strchr(comp, '/') = '\0';
		d = dir_live(g.cur, comp);
		if (d) {
			d->pending++;   /* the walk's reference, as dir_enter's */
			free(comp);
			g.cur = d;
			if (dir_unpark(d) < 0)
				return -1;
			continue;
		}
		if (walk_stat(g.cur, comp, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				d = dir_enter(g.cur, comp, &st, 0);
			else {
				errno = ENOTDIR;
				outcome(OUT_FAIL_SRC | OUT_NEW, g.cur, comp, NULL);
			}
		}
		free(comp);
		if (d == NULL)
			return -1;
		g.cur = d;
	}
	return 0;
}

/*
 * --files-from: read the next listed path, reach its parent directory
 * (list_enter) and hand its last component to walk_entry.  A listed
 * directory is then walked whole.  Returns 0 at the end of the list.
 */
static int
list_step(void)
{
	static char *line;
	static size_t cap;
	char *p, *par, *last;
	struct stat st;
	ssize_t n;

	n = getdelim(&line, &cap, g.listsep, g.list);
	if (n < 0 && ferror(g.list) && errno == EINTR) {
		/* a signal that stops the run (SIGUSR1 restarts the read) */
		clearerr(g.list);
		return 1;
	}
	if (n < 0 && ferror(g.list)) {
		warn_path(1, "--files-from", "%s; the rest of the list is not copied", strerror(errno));
		clearerr(g.list);
	}
	if (n < 0) {
		while (g.cur)
			walk_pop();
		free(line);
		line = NULL;
		return 0;
	}
	if (n > 0 && line[n - 1] == g.listsep)
		line[--n] = '\0';
	while (n > 1 && line[n - 1] == '/')
		line[--n] = '\0';
	for (p = line; p[0] == '.' && p[1] == '/';)
		for (p += 2; *p == '/'; p++)
			;
	if (*p == '\0' || strcmp(p, ".") == 0)
		return 1;
	if (*p == '/' || strcmp(p, "..") == 0 || strncmp(p, "../", 3) == 0 ||
	    strstr(p, "/../") || (n >= 3 && strcmp(line + n - 3, "/..") == 0) ||
	    strstr(p, "//") || strstr(p, "/./")) {
		outcome(OUT_FAIL_SRC | OUT_NEW, NULL, p, "listed path is not a plain path below SOURCE");
		return 1;
	}
	last = strrchr(p, '/');
	if (last) {
		*last++ = '\0';
		par = p;
	} else {
		last = p;
		par = "";
	}
	if (list_enter(par) == 0 && walk_stat(g.cur, last, &st) == 0)
		walk_entry(g.cur, last, &st);
	return 1;
}

/*
 * One step of the walk: read one entry of the current directory and give
 * it to walk_entry.  At the end of a directory, flush its batch and go
 * back up.  Returns 0 when the walk is finished.
 */
static int
walk_step(void)
{
	struct dir *d = g.cur;
	struct drec *de;
	struct stat st;
	const char *name;

	if (d == NULL)
		return 0;
	if (d->rest) {          /* parked while read: the rest of its listing */
		if (d->irest == d->nrest) {
			walk_pop();
			return g.cur != NULL;
		}
		name = d->rest[d->irest++];
		if (walk_stat(d, name, &st) == 0)
			walk_entry(d, name, &st);
		free((char *)name);
		return 1;
	}
	if (d->ds == NULL)
		return list_step();
	de = rd_next(d->ds, d->sfd);
	if (de == NULL) {
		if (errno) {
			d->partial = 1;
			warn_entry(1, 0, d, NULL, errno);
		}
		walk_pop();
		return g.cur != NULL;
	}
	name = de->name;
	if (dot_or_dotdot(name))
		return 1;
	if (g.shard_n && de->type != DT_DIR && de->type != DT_UNKNOWN &&
	    !shard_mine(de->ino))
		return 1;       /* another shard's: not even a stat */
	if (de->type == DT_REG && walk_nostat()) {
		memset(&st, 0, sizeof st);      /* st_nlink 0: ENT_NOSTAT */
		st.st_mode = S_IFREG;
		st.st_ino = de->ino;
		st.st_dev = d->st.st_dev;
		g.nnostat++;
		walk_entry(d, name, &st);
		return 1;
	}
	if (walk_stat(d, name, &st) == 0) {
		walk_entry(d, name, &st);
	} else if (d->dn) {     /* --delete: keep what could not be looked at */
		struct dname *dn = dn_find(d->dn, name);

		if (dn)
			dn->seen = 1;
	}
	return 1;
}

/* -- hard links (parent side) -- */

static uint64_t
hl_hash(uint64_t dev, uint64_t ino)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ULL ^ dev * 0xc2b2ae3d27d4eb4fULL;

	return h ^ (h >> 29);
}

/* Find the table slot of (dev, ino), inserting it if absent. */
static struct hl *
hl_lookup(uint64_t dev, uint64_t ino, int *isnew)
{
	struct hl *h;
	size_t i, k;

	if (g.hlused * 2 >= g.hlsize) {         /* grow at half full */
		struct hl *old = g.hl;
		size_t oldsize = g.hlsize;

		g.hlsize = oldsize ? oldsize * 2 : HL_MIN;
		g.hl = xmalloc(g.hlsize * sizeof *g.hl);
		memset(g.hl, 0, g.hlsize * sizeof *g.hl);
		for (k = 0; k < oldsize; k++) {
			if (old[k].state == 0)
				continue;
			i = hl_hash(old[k].dev, old[k].ino) & (g.hlsize - 1);
			while (g.hl[i].state)
				i = (i + 1) & (g.hlsize - 1);
			g.hl[i] = old[k];
		}
		free(old);
	}
	i = hl_hash(dev, ino) & (g.hlsize - 1);
	for (;; i = (i + 1) & (g.hlsize - 1)) {
		h = &g.hl[i];
		if (h->state == 0) {
			h->dev = dev;
			h->ino = ino;
			h->state = HL_PENDING;
			g.hlused++;
			*isnew = 1;
			return h;
		}
		if (h->dev == dev && h->ino == ino) {
			*isnew = 0;
			return h;
		}
	}
}

/*
 * Link the existing entry `from` in fromfd as `name` in dirfd, replacing
 * an entry of that name atomically (link to a hidden name, then rename).
 * The inode is locked before its hidden name appears, so that no other
 * run's tmp_sweep takes it.  Returns 0 or -1 with errno.  Parent only.
 */
static int
link_replace(int fromfd, const char *from, int dirfd, const char *name)
{
	char hide[TMP_NAME_MAX];
	struct stat st;
	int r, e, lk;

	if (linkat(fromfd, from, dirfd, name, 0) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	/* the lock only keeps other runs' sweeps away: held by another run
	 * (EWOULDBLOCK) it protects as well; without locks (ENOLCK) a sweep
	 * could take the hidden name, and the rename then fails visibly */
	lk = openat(fromfd, from, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (lk >= 0 && flock(lk, LOCK_EX | LOCK_NB) < 0 && errno != EWOULDBLOCK && errno != ENOLCK) {
		close_keep(lk);
		return -1;
	}
	do
		r = linkat(fromfd, from, dirfd, tmp_name(hide, sizeof hide), 0);
	while (r < 0 && errno == EEXIST);
	if (r == 0) {
		r = renameat(dirfd, hide, dirfd, name);
		e = errno;
		/* a rename onto another name of the same inode does nothing */
		if (fstatat(dirfd, hide, &st, AT_SYMLINK_NOFOLLOW) == 0)
			unlinkat(dirfd, hide, 0);
		errno = e;
	}
	close_keep(lk);
	return r;
}

/*
 * Make `name` in d another name of the hard link group h, whose first
 * name is complete, and record the outcome.  EMLINK: copy the data
 * instead, with a warning.  Parent only.
 */
static void
hl_link(struct hl *h, struct dir *d, const char *name)
{
	char *slash = strrchr(h->path, '/');
	const char *fname = slash ? slash + 1 : h->path;
	struct stat a, b;
	int fd, r;

	if (dir_unpark(d) < 0) {
		outcome(OUT_FAIL_DST, d, name, "its directory changed during copy; not copied");
		return;
	}
	if (slash) {
		*slash = '\0';
		fd = open_beneath(g.dstfd, h->path);
		*slash = '/';
	} else
		fd = dup(g.dstfd);
	if (fd < 0) {
		outcome(OUT_FAIL_DST, d, name, NULL);
		return;
	}
	if (g.update && fstatat(fd, fname, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
	    fstatat(d->dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
		close(fd);
		outcome(OUT_SKIPPED, d, name, NULL);
		return;
	}
	r = link_replace(fd, fname, d->dfd, name);
	close_keep(fd);
	if (r == 0)
		outcome(OUT_COPIED, d, name, NULL);
	else if (DEST_STOPS(errno)) {
		dest_full(errno);
		outcome(OUT_DROPPED, d, name, NULL);
	} else if (errno == EMLINK && fstatat(d->sfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0) {
		char *p = src_path(d, name);

		warn_path(0, p, "too many links; copied as a separate file");
		free(p);
		batch_add(d, name, NULL, &a, 0);        /* the same entry: found once */
		batch_flush(d);
	} else
		outcome(OUT_FAIL_DST, d, name, NULL);
}

/*
 * The first name of group h was copied (ok > 0), failed (0) or dropped
 * because the copy is stopping (< 0).  Link, promote or drop the names
 * that waited for it.
 */
static void
hl_settle(struct hl *h, int ok)
{
	struct waiter *wt, *next;

	h->state = ok > 0 ? HL_DONE : HL_FAILED;
	for (wt = h->wait, h->wait = NULL; wt; wt = next) {
		next = wt->next;
		if (ok < 0) {
			outcome(OUT_DROPPED, wt->dir, wt->name, NULL);  /* the copy stopped */
		} else if (h->state == HL_DONE) {
			hl_link(h, wt->dir, wt->name);
		} else {
			/* the first copy failed: this name becomes the first */
			struct stat st;

			if (dir_unpark(wt->dir) == 0 &&
			    fstatat(wt->dir->sfd, wt->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
				free(h->path);
				h->path = path_join(wt->dir->rel, wt->name, NULL);
				h->state = HL_PENDING;
				h->wait = next;
				batch_add(wt->dir, wt->name, NULL, &st, ENT_HLFIRST);
				batch_flush(wt->dir);
				dir_put(wt->dir);
				free(wt->name);
				free(wt);
				return;
			}
			outcome(OUT_FAIL_SRC, wt->dir, wt->name, NULL);
		}
		dir_put(wt->dir);
		free(wt->name);
		free(wt);
	}
}

/*
 * A non-directory with several links: the first name is copied, the
 * others linked to it once it is done.  Returns 1 if the caller should
 * copy this name (it is the first), 0 if it was handled here.
 */
static int
hl_entry(struct dir *d, const char *name, const struct stat *st)
{
	int isnew;
	struct hl *h = hl_lookup(st->st_dev, st->st_ino, &isnew);
	struct waiter *wt;

	if (isnew || h->state == HL_FAILED) {
		free(h->path);
		h->path = path_join(d->rel, name, NULL);
		h->state = HL_PENDING;
		return 1;
	}
	if (h->state == HL_DONE) {
		hl_link(h, d, name);
		return 0;
	}
	wt = xmalloc(sizeof *wt);
	wt->dir = d;
	wt->name = xstrdup(name);
	wt->next = h->wait;
	h->wait = wt;
	d->pending++;
	return 0;
}

/* -- census (a child of the parent) -- */

/*
 * Start the census for the tree at sfd: a child process that walks SOURCE
 * a second time, read-only, and only counts files and bytes (with stat:
 * size alone tells a 500 MB file from a 5 kB one), so the progress line
 * has real totals long before the walk ends.  It runs beside the walk, on
 * the CPU time the walk and the workers leave, and never slows the walk by
 * more than its share of the CPUs: a stat costs some 3 us, the walk ten
 * times that per entry.  Its totals go to a shared page (struct census);
 * done is set last, so totals read with done set are complete.  Hard-linked
 * files count size/nlink.  If it cannot start, the line says "scanning"
 * until the walk ends.  Parent; the child leaves with _exit.
 */
static void
census_start(int sfd)
{
	if (g.cs == NULL) {
		g.cs = mmap(NULL, sizeof *g.cs, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (g.cs == MAP_FAILED) {
			g.cs = NULL;
			return;
		}
	}
	memset((void *)g.cs, 0, sizeof *g.cs);
	fflush(stdout);
	fflush(stderr);
	switch (g.cen_pid = fork()) {
	case -1:
		g.cen_pid = 0;
		return;
	case 0:
		break;
	default:
		return;
	}
	in_worker = 1;                  /* out of memory: leave quietly */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);        /* ^C goes to the parent, which kills us */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGWINCH, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	if (sfd != 3) {
		dup2(sfd, 3);
		sfd = 3;
	}
#ifdef SYS_close_range
	syscall(SYS_close_range, 4, ~0U, 0);    /* channels, the walk's dirs */
#endif
	census_run(sfd);
	_exit(0);
}

/*
 * The census child's walk: read the tree depth first, post the totals
 * every 256 entries and at the end.  Gives up quietly on any error or
 * when out of descriptors (done stays 0: the totals are not complete).
 */
static void
census_run(int sfd)
{
	/* a new open file description: a dup() would share the walk's offset */
	int fd = src_openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *ds = fd < 0 ? NULL : fdopendir(fd);
	unsigned n = 0;

	if (ds == NULL)
		return;
	g.fdopen = 5;           /* 0-2, sfd and ds */
	g.cen = xmalloc(sizeof *g.cen);
	g.cen->up = NULL;
	g.cen->ds = ds;
	g.cen->rel = xstrdup("");
	while (g.cen) {
		census_step();
		if (++n % 256 == 0) {
			g.cs->files = g.cen_files;
			g.cs->bytes = g.cen_bytes;
		}
	}
	g.cs->files = g.cen_files;
	g.cs->bytes = g.cen_bytes;
	__sync_synchronize();   /* the totals before done, on every CPU */
	g.cs->done = g.cen_done;
}

/* Leave the census's current directory.  Census child. */
static void
census_pop(void)
{
	struct cframe *c = g.cen;

	closedir(c->ds);
	g.fdopen--;
	g.cen = c->up;
	free(c->rel);
	free(c);
}

/* One entry of the census.  Census child. */
static void
census_step(void)
{
	struct cframe *c = g.cen, *sub;
	struct dirent *de;
	struct stat st;
	int fd;

	de = readdir(c->ds);
	if (de == NULL) {
		census_pop();
		g.cen_done = g.cen == NULL;
		return;
	}
	if (dot_or_dotdot(de->d_name))
		return;
	if (g.shard_n && de->d_type != DT_DIR && de->d_type != DT_UNKNOWN &&
	    !shard_mine(de->d_ino))
		return;
	if (fstatat(dirfd(c->ds), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !wanted(c->rel, de->d_name, &st))
		return;
	if (!S_ISDIR(st.st_mode)) {
		g.cen_files++;
		if (S_ISREG(st.st_mode))
			g.cen_bytes += data_bytes(st.st_size, st.st_blocks) /
			    (st.st_nlink ? st.st_nlink : 1);
		return;
	}
	if (g.onefs && st.st_dev != g.rootdev)
		return;
	fd = src_openat(dirfd(c->ds), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	sub = xmalloc(sizeof *sub);
	sub->ds = fdopendir(fd);
	if (sub->ds == NULL || g.fdopen >= g.fdlimit) {
		free(sub);
		close(fd);
		while (g.cen)           /* no room: totals stay provisional */
			census_pop();
		return;
	}
	g.fdopen++;
	sub->up = c;
	sub->rel = path_join(c->rel, de->d_name, NULL);
	g.cen = sub;
}

/* Stop the census child, if any, and reap it.  Parent. */
static void
census_stop(void)
{
	if (g.cen_pid <= 0)
		return;
	kill(g.cen_pid, SIGKILL);
	while (waitpid(g.cen_pid, NULL, 0) < 0 && errno == EINTR)
		;
	g.cen_pid = 0;
}

/* -- jobs and the queue (parent side) -- */

/* Start a job for directory d (the batch being filled). */
static struct job *
job_new(struct dir *d)
{
	struct job *j = xmalloc(sizeof *j);
	struct msg *m;

	memset(j, 0, sizeof *j);
	j->cap = 4096;
	j->buf = xmalloc(j->cap);
	j->len = sizeof *m;
	j->dir = d;
	d->pending++;
	m = (struct msg *)j->buf;
	memset(m, 0, sizeof *m);
	m->type = MSG_JOB;
	m->flags = d->jflags;
	return j;
}

static void
job_free(struct job *j)
{
	struct dir *d = j->dir;

	free(j->buf);
	free(j);
	dir_put(d);
}

/* Queue the batch of directory d, if it has anything. */
static void
batch_flush(struct dir *d)
{
	struct job *j = d->batch;

	if (j == NULL)
		return;
	d->batch = NULL;
	job_queue(j, 0);
}

/* Append an entry record (already filled but for its names) to job j. */
static void
job_append(struct job *j, struct ent *e, const char *name, const char *dname)
{
	size_t need;

	e->namelen = strlen(name);
	e->dnamelen = dname ? strlen(dname) : 0;
	need = ent_size(e);
	if (j->len + need > j->cap) {
		j->cap = j->len + need > 2 * j->cap ? j->len + need : 2 * j->cap;
		j->buf = xrealloc(j->buf, j->cap);
	}
	memset(j->buf + j->len, 0, need);
	memcpy(j->buf + j->len, e, sizeof *e);
	memcpy(j->buf + j->len + sizeof *e, name, e->namelen);
	if (dname)
		memcpy(j->buf + j->len + sizeof *e + e->namelen + 1, dname, e->dnamelen);
	j->len += need;
	j->nent++;
	j->bytes += S_ISREG(e->mode) ? e->size : 0;
}

/*
 * Add an entry to d's batch, flushing first when it would overflow.
 * dname, if not NULL, is a different destination name.
 */
static void
batch_add(struct dir *d, const char *name, const char *dname,
    const struct stat *st, int flags)
{
	struct ent e;
	struct job *j;
	size_t need;

	ent_fill(&e, st);
	e.flags = flags;
	if (strlen(name) > NAME_MAX || (dname && strlen(dname) > NAME_MAX)) {
		/* no file system takes it, and no job could carry it */
		errno = ENAMETOOLONG;
		outcome((dname ? OUT_FAIL_DST : OUT_FAIL_SRC) | OUT_NEW, d, dname ? dname : name, NULL);
		return;
	}
	e.namelen = strlen(name);
	e.dnamelen = dname ? strlen(dname) : 0;
	need = ent_size(&e);
	j = d->batch;
	if (j && (j->nent >= BATCH_FILES || j->len + need > MSG_MAX ||
	    (j->bytes + e.size > BATCH_BYTES && j->nent > 0)))
		batch_flush(d);
	if (d->batch == NULL)
		d->batch = job_new(d);
	job_append(d->batch, &e, name, dname);
	if (S_ISREG(st->st_mode))
		g.bytes_found += data_bytes(st->st_size, st->st_blocks);    /* for progress */
}

/* Put a job on the queue, at the back, or at the front for a retry. */
static void
job_queue(struct job *j, int front)
{
	struct msg *m = (struct msg *)j->buf;

	if (j->id == 0) {
		j->id = ++g.nextid ? g.nextid : ++g.nextid;
		m->id = j->id;
		m->count = j->nent;
		m->len = j->len - sizeof *m;
	}
	if (front) {
		j->next = g.qhead;
		g.qhead = j;
		if (g.qtail == NULL)
			g.qtail = j;
	} else {
		j->next = NULL;
		if (g.qtail)
			g.qtail->next = j;
		else
			g.qhead = j;
		g.qtail = j;
	}
	g.nqueued++;
}

/* Take the job at the front of the queue. */
static struct job *
job_pop(void)
{
	struct job *j = g.qhead;

	if (j) {
		g.qhead = j->next;
		if (g.qhead == NULL)
			g.qtail = NULL;
		g.nqueued--;
	}
	return j;
}

/*
 * Take a job for worker k from the queue: one of a directory k already
 * works in, else one of a directory no worker is in, else the first.
 * Workers in different directories do not contend for one directory's
 * lock nor, on ext4, for one block group's inode bitmap: with two workers
 * in one directory ext4 spent 2.5 times the CPU of one.
 */
static struct job *
job_pick(unsigned k)
{
	struct job *j, *prev = NULL, *free_prev = NULL, *pick = NULL;
	int n = 0, found = 0;

	for (j = g.qhead; j && n < AFFINITY_SCAN; prev = j, j = j->next, n++) {
		if (j->dir->owner == (int)k) {
			pick = j;
			free_prev = prev;
			found = 2;
			break;
		}
		if (j->dir->owner < 0 && !found) {
			pick = j;
			free_prev = prev;
			found = 1;
		}
	}
	if (!found)
		return job_pop();
	if (free_prev == NULL)
		return job_pop();
	free_prev->next = pick->next;
	if (g.qtail == pick)
		g.qtail = free_prev;
	g.nqueued--;
	return pick;
}

/* Record that job j went to worker k (fly) or came back (land). */
static void
job_fly(struct job *j, unsigned k)
{
	j->dir->owner = k;
	j->dir->busy++;
}

static void
job_land(struct job *j)
{
	if (--j->dir->busy == 0)
		j->dir->owner = -1;
}

/* Entry number i of a job. */
static struct ent *
job_ent(struct job *j, uint32_t i)
{
	char *p = j->buf + sizeof(struct msg);

	while (i-- > 0)
		p += ent_size((struct ent *)p);
	return (struct ent *)p;
}

/* Count a job's entries as dropped (destination full or interrupted). */
static void
job_drop(struct job *j)
{
	struct ent *e;
	uint32_t i;

	for (i = 0, e = job_ent(j, 0); i < j->nent; i++, e = (struct ent *)((char *)e + ent_size(e))) {
		if (e->flags & ENT_DROP)
			continue;
		outcome(OUT_DROPPED, j->dir, ent_dname(e), NULL);
		if (e->flags & ENT_HLFIRST) {
			int isnew;

			hl_settle(hl_lookup(e->dev, e->ino, &isnew), -1);
		}
	}
	job_free(j);
}

/*
 * The copy is stopping (destination full): drop the queue and the batches
 * the walk was still filling, so that the ledger balances.
 */
static void
walk_abandon(void)
{
	struct dir *d;

	for (d = g.cur; d; d = d->up) {
		if (d->batch) {
			job_queue(d->batch, 0);
			d->batch = NULL;
		}
	}
	while (g.qhead)
		job_drop(job_pop());
}

/* Jobs sent to workers and not yet done. */
static unsigned
in_flight(void)
{
	unsigned i, n = 0;

	for (i = 0; i < g.jobs; i++)
		n += g.wk[i].nfly;
	return n;
}

/* -- dispatch and results (parent side) -- */

/*
 * Hand queued jobs to workers with room, least loaded first.  Each job
 * carries its directory descriptors.
 */
static void
dispatch(void)
{
	unsigned i, best;
	struct job *j;

	while (g.qhead && !g.stop) {
		best = g.jobs;
		for (i = 0; i < g.jobs; i++)
			if (g.wk[i].fd >= 0 && !g.wk[i].broken && g.wk[i].nfly < QDEPTH &&
			    (best == g.jobs || g.wk[i].nfly < g.wk[best].nfly))
				best = i;
		if (best == g.jobs)
			return;
		j = job_pick(best);
		if (dir_unpark(j->dir) < 0) {
			job_fail(j, "its directory changed during copy; not copied");
			continue;
		}
		{
			int fds[2] = { j->dir->sfd, j->dir->dfd };

			if (msg_send(g.wk[best].fd, j->buf, j->len, fds, 2) < 0) {
				job_queue(j, 1);        /* the worker is gone: EOF comes */
				g.wk[best].broken = 1;
				continue;
			}
		}
		g.wk[best].fly[g.wk[best].nfly++] = j;
		job_fly(j, best);
	}
}

/* Destination full: say it once, stop copying. */
static void
dest_full(int err)
{
	if (!g.full) {
		warn_path(1, g.dst, "%s; stopping", strerror(err));
		g.full = 1;
	}
	g.nodel = 1;
	g.stop = 1;
	g.walking = 0;
}

/*
 * Decide entry e of directory d from the worker's report on it (NULL:
 * copied, nothing to say), print what needs saying and record the
 * outcome.  Returns 1 if the copy exists (hard link groups wait for it).
 */
static int
rep_outcome(struct dir *d, const struct ent *e, const struct rep *rp)
{
	char *p;

	switch (rp ? rp->what : 0) {
	case 0:
		break;
	case R_SKIP:
		g.bytes_skipped += S_ISREG(e->mode) ? rp->val : 0;
		outcome(OUT_SKIPPED, d, ent_dname(e), NULL);
		return 1;
	case R_CHANGED:         /* copied as read: a warning, exit 1 */
		p = src_path(d, ent_name(e));
		warn_path(1, p, "changed size while being copied (%llu bytes, now %llu)",
		    (unsigned long long)e->size, (unsigned long long)rp->val);
		free(p);
		break;
	case R_VANISHED:
		outcome(OUT_FAIL_SRC, d, ent_name(e), "vanished before it could be copied");
		return 0;
	case R_RESTAT:          /* not copied: the walk's stat was needed */
		/* readdir did not say what fstat did, or hard links are
		 * common here (1 in 16 sent back): from now on, stat all */
		if (rp->val == 1 || (rp->val == 2 && ++g.nrestat >= 64 &&
		    g.nrestat * 16 > g.nnostat))
			g.statall = 1;
		walk_restat(d, ent_name(e));
		return 0;
	case R_RACED:           /* the fstat check: one file's name, another's inode */
		outcome(rp->val ? OUT_FAIL_DST : OUT_FAIL_SRC, d, rp->val ? ent_dname(e) : ent_name(e),
		    "changed during copy (another file took its name); not copied");
		return 0;
	case R_BADCOPY:
		outcome(OUT_FAIL_SRC, d, ent_name(e),
		    "verification failed: the copy differs from the source; not copied");
		return 0;
	case R_FAIL_DST:
		if (DEST_STOPS(rp->err)) {
			dest_full(rp->err);     /* said once for the whole run */
			outcome(OUT_DROPPED, d, ent_dname(e), NULL);
			return 0;
		}
		errno = rp->err;
		outcome(OUT_FAIL_DST, d, ent_dname(e), rp->err == EISDIR ?
		    "cannot overwrite directory with non-directory" : NULL);
		return 0;
	default:
		errno = rp->err;
		outcome(OUT_FAIL_SRC, d, ent_name(e), NULL);
		return 0;
	}
	if (rp)
		rep_warn(d, ent_dname(e), rp);  /* copied, without some metadata */
	outcome(OUT_COPIED, d, ent_dname(e), NULL);
	return 1;
}

/*
 * A worker finished job j: decide every entry from its report, settle
 * hard link groups, and free the job.
 */
static void
job_done(struct job *j, const struct msg *m, const struct rep *r)
{
	struct ent *e;
	uint32_t i, k = 0;
	int ok, isnew;

	g.bytes_done += m->bytes;
	for (i = 0, e = job_ent(j, 0); i < j->nent; i++, e = (struct ent *)((char *)e + ent_size(e))) {
		const struct rep *rp = k < m->count && r[k].idx == i ? &r[k++] : NULL;

		if (e->flags & ENT_DROP)
			continue;       /* decided when it was dropped */
		ok = rep_outcome(j->dir, e, rp);
		if (!ok && rp) {        /* its bytes were written, not copied */
			g.bytes_done -= rp->wrote;
			g.bytes_lost += rp->wrote;
		}
		if (e->flags & ENT_HLFIRST)
			hl_settle(hl_lookup(e->dev, e->ino, &isnew), ok);
	}
	job_free(j);
}

/*
 * Fail every entry of job j (which no worker could take), naming each
 * with the message why, and free it.  Parent.
 */
static void
job_fail(struct job *j, const char *why)
{
	struct ent *e;
	uint32_t i;
	int isnew;

	for (i = 0, e = job_ent(j, 0); i < j->nent; i++, e = (struct ent *)((char *)e + ent_size(e))) {
		if (e->flags & ENT_DROP)
			continue;
		outcome(OUT_FAIL_SRC, j->dir, ent_name(e), why);
		if (e->flags & ENT_HLFIRST)
			hl_settle(hl_lookup(e->dev, e->ino, &isnew), 0);
	}
	job_free(j);
}

/*
 * Worker i is gone (end of file on its channel): reap it, say how it
 * ended, put the jobs it held back at the front of the queue and start a
 * new worker in its slot.  The entry it was on when it died (its shared
 * slot says which) is given up after MAX_DEATHS deaths.  Parent only.
 */
static void
wk_died(unsigned i)
{
	struct worker *k = &g.wk[i];
	uint32_t cur = g.slot[i].job, idx = g.slot[i].idx;
	pid_t pid = k->pid;
	int st = wk_reap(i), isnew;
	unsigned f;

	if (!got_sig) {
		progress_clear();
		if (WIFSIGNALED(st))
			fprintf(stderr, "pcopy: worker %u (pid %ld) killed by signal %d\n",
			    i + 1, (long)pid, WTERMSIG(st));
		else
			fprintf(stderr, "pcopy: worker %u (pid %ld) exited with status %d\n",
			    i + 1, (long)pid, WEXITSTATUS(st));
	}
	for (f = k->nfly; f-- > 0;) {
		struct job *j = k->fly[f];

		job_land(j);
		if (j->dir->dfd >= 0)
			tmp_sweep(j->dir->dfd);    /* what it was writing */
		if (j->id == cur && idx < j->nent && ++j->deaths >= MAX_DEATHS) {
			struct ent *e = job_ent(j, idx);
			char why[80];

			snprintf(why, sizeof why, "a worker was killed %u times while copying it; giving up", j->deaths);
			outcome(OUT_FAIL_SRC, j->dir, ent_name(e), why);
			e->flags |= ENT_DROP;
			if (e->flags & ENT_HLFIRST)
				hl_settle(hl_lookup(e->dev, e->ino, &isnew), 0);
			j->deaths = 0;
		} else if (f == 0 && j->id != cur && ++j->deaths >= MAX_DEATHS) {
			/* it died before it could even start on the job */
			char why[80];

			snprintf(why, sizeof why, "a worker died %u times before it "
			    "could start on it; giving up", MAX_DEATHS);
			job_fail(j, why);
			continue;
		}
		job_queue(j, 1);
	}
	k->nfly = 0;
	if (++g.barren > MAX_DEATHS * (g.jobs + 1) && !g.stop) {
		/* no job finished between all these deaths: a respawn loop
		 * would never end */
		warn_path(1, "workers", "%u died in a row without finishing a job; stopping",
		    g.barren);
		g.stop = 1;
		g.walking = 0;
	}
	if (got_sig || g.stop || wk_spawn(i) == 0)
		return;
	warn_path(1, "fork", "cannot start a new worker: %s", strerror(errno));
	for (f = 0; f < g.jobs && g.wk[f].fd < 0; f++)
		;
	if (f == g.jobs) {      /* none left: stop rather than wait forever */
		g.stop = 1;
		g.walking = 0;
	}
}

/*
 * Read one message from worker i: the result of its oldest job.  End of
 * file (or a broken channel): the worker is gone (wk_died).  Parent only.
 */
static void
wk_input(unsigned i)
{
	static uint64_t buf[(sizeof(struct msg) + (BATCH_FILES + 1) * sizeof(struct rep)) / 8 + 1];
	struct worker *k = &g.wk[i];
	struct msg *m = (struct msg *)buf;
	int fds[MSG_FDS];
	ssize_t n;
	unsigned f;

	n = msg_recv(k->fd, buf, sizeof buf, fds);
	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0) {
		wk_died(i);
		return;
	}
	if (m->type != MSG_DONE || k->nfly == 0 || k->fly[0]->id != m->id ||
	    m->count > BATCH_FILES + 1 || (size_t)n < sizeof *m + m->count * sizeof(struct rep))
		fatal("worker %u: unexpected message", i + 1);
	g.barren = 0;
	job_land(k->fly[0]);
	model_job(i, m);
	job_done(k->fly[0], m, (struct rep *)(m + 1));
	for (f = 1; f < k->nfly; f++)
		k->fly[f - 1] = k->fly[f];
	k->nfly--;
}

/* -- finished directories and --delete (parent side) -- */

/*
 * --delete.  A DEST directory the walk reads gets its names listed first
 * (dn_read); each name SOURCE also has is marked as the walk finds it,
 * and when the directory is finished (dir_finish, contents copied, before
 * its metadata) the unmarked ones are removed (del_dir): files, symlinks
 * as links, directories with all they hold, always by name relative to a
 * held descriptor, never following a symlink and never crossing into
 * another file system of DEST.  All of it runs in the parent.
 */

/* Find name in dn, or the free slot where it belongs. */
static struct dname *
dn_slot(struct dnames *dn, const char *name)
{
	size_t i = fnv1a(name, strlen(name), 0xcbf29ce484222325ULL) & (dn->size - 1);

	while (dn->tab[i].name && strcmp(dn->tab[i].name, name) != 0)
		i = (i + 1) & (dn->size - 1);
	return &dn->tab[i];
}

/* The entry for name in a directory's list, NULL if DEST had no such name. */
static struct dname *
dn_find(struct dnames *dn, const char *name)
{
	struct dname *e;

	if (dn->size == 0)
		return NULL;
	e = dn_slot(dn, name);
	return e->name ? e : NULL;
}

static void
dn_free(struct dnames *dn)
{
	size_t i;

	if (dn == NULL)
		return;
	for (i = 0; i < dn->size; i++)
		free(dn->tab[i].name);
	free(dn->tab);
	free(dn);
}

/* Add name (of type, a DT_* value) to dn, growing it at 1/2 full. */
static void
dn_add(struct dnames *dn, const char *name, unsigned char type)
{
	struct dname *e, *old = dn->tab;
	size_t i, n = dn->size;

	if (2 * (dn->used + 1) > dn->size) {
		dn->size = n ? 2 * n : 16;
		dn->tab = xmalloc(dn->size * sizeof *dn->tab);
		memset(dn->tab, 0, dn->size * sizeof *dn->tab);
		for (i = 0; i < n; i++)
			if (old[i].name)
				*dn_slot(dn, old[i].name) = old[i];
		free(old);
	}
	e = dn_slot(dn, name);
	e->name = strdup(name);
	if (e->name == NULL)
		die("out of memory");
	e->type = type;
	e->seen = 0;
	dn->used++;
}

/* DEST directory d could not be listed: say so; nothing is deleted in it. */
static void
dn_failed(const struct dir *d, int err)
{
	char *p = dst_path(d, NULL);

	warn_path(1, p, "cannot list it for --delete (%s): nothing deleted in it",
	    strerror(err));
	free(p);
	del_check(err);
}

/* May the parent delete now?  Not after a stop, a signal or del_check. */
static int
del_ok(void)
{
	return g.del && !g.nodel && !g.stop && !got_sig;
}

/*
 * After an error that makes the rest of the run doubtful (EIO, a full
 * DEST), delete nothing more; say so once.  Parent only.
 */
static void
del_check(int err)
{
	if (!g.del || g.nodel || (err != EIO && err != ENOSPC && err != EDQUOT))
		return;
	g.nodel = 1;
	warn_path(0, g.dst, "%s seen: deleting nothing more in this run", strerror(err));
}

/* Count and (-v, -n) list one deletion: rel/name below DEST, '/' for dirs. */
static void
del_said(const char *rel, const char *name, int isdir)
{
	char *p;

	g.deleted++;
	if (!g.verbose && !g.dryrun)
		return;
	p = path_join(rel, name, NULL);
	progress_clear();
	printf("delete %s%s\n", p, isdir ? "/" : "");
	free(p);
}

/* Name a failed deletion of rel/name (below DEST). */
static void
del_failed(const char *rel, const char *name, const char *why)
{
	char *p = path_join(g.dst, rel, name);

	warn_path(1, p, "cannot delete: %s", why);
	free(p);
}

/*
 * Remove the directory `name` in dfd (rel below DEST) and everything in
 * it, or with -n list what that would remove.  The directory is opened
 * O_NOFOLLOW and must be on device dev: a mount point in DEST is named,
 * not emptied.  Entries go as they are read, children before their
 * directory, so an interrupted run leaves a smaller tree that the next
 * run removes.  Returns 0, or -1 after naming the failure.  Parent only.
 */
static int
del_tree(int dfd, const char *rel, const char *name, dev_t dev)
{
	struct dirent *de;
	struct stat st;
	char *sub;
	DIR *ds;
	int fd, ret = 0;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) {
		/* no longer a directory: remove what it is now */
		if (!g.dryrun && unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
			goto fail;
		del_said(rel, name, 0);
		return 0;
	}
	if (fd < 0)
		goto fail;
	if (fstat(fd, &st) < 0) {
		close_keep(fd);
		goto fail;
	}
	if (st.st_dev != dev) {
		close(fd);
		del_failed(rel, name, "a mount point in DEST; not crossed");
		return -1;
	}
	if (g.fdopen >= g.fdlimit + FD_SPARE / 2) {
		close(fd);
		errno = EMFILE;
		goto fail;
	}
	/* it goes anyway: let its owner empty it whatever its mode */
	if (!g.dryrun && (st.st_mode & S_IRWXU) != S_IRWXU && st.st_uid == g.euid &&
	    fchmod(fd, (st.st_mode & 07777) | S_IRWXU) < 0) {
		/* then the unlinks below fail and are named */
	}
	if ((ds = fdopendir(fd)) == NULL) {
		close_keep(fd);
		goto fail;
	}
	g.fdopen++;
	sub = path_join(rel, name, NULL);
	while (!got_sig && !g.nodel) {
		errno = 0;
		if ((de = readdir(ds)) == NULL) {
			if (errno) {
				del_check(errno);
				del_failed(rel, name, strerror(errno));
				ret = -1;
			}
			break;
		}
		if (dot_or_dotdot(de->d_name))
			continue;
		if (de->d_type == DT_DIR || (g.dryrun && de->d_type == DT_UNKNOWN &&
		    fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode))) {
			ret |= del_tree(fd, sub, de->d_name, dev);
		} else if (g.dryrun) {
			del_said(sub, de->d_name, 0);
		} else if (unlinkat(fd, de->d_name, 0) == 0) {
			del_said(sub, de->d_name, 0);
		} else if (errno == EISDIR) {   /* d_type was DT_UNKNOWN */
			ret |= del_tree(fd, sub, de->d_name, dev);
		} else if (errno != ENOENT) {
			del_check(errno);
			del_failed(sub, de->d_name, strerror(errno));
			ret = -1;
		}
	}
	free(sub);
	closedir(ds);
	g.fdopen--;
	if (ret < 0 || got_sig || g.nodel)
		return -1;
	if (!g.dryrun && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		goto fail;
	del_said(rel, name, 1);
	return 0;
fail:
	del_check(errno);
	del_failed(rel, name, strerror(errno));
	return -1;
}

/*
 * Remove the entry `name` of DEST directory d, of DT_* type as listed
 * (or with -n list it).  A symlink is removed as a link.  Parent only.
 */
static int
del_entry(struct dir *d, const char *name, unsigned char type)
{
	struct stat st;

	if (type != DT_DIR) {
		if (g.dryrun || unlinkat(d->dfd, name, 0) == 0 || errno == ENOENT) {
			del_said(d->rel, name, 0);
			return 0;
		}
		if (errno != EISDIR) {  /* it became a directory: take it as one */
			del_check(errno);
			del_failed(d->rel, name, strerror(errno));
			return -1;
		}
	}
	if (fstat(d->dfd, &st) < 0) {
		del_failed(d->rel, name, strerror(errno));
		return -1;
	}
	return del_tree(d->dfd, d->rel, name, st.st_dev);
}

/*
 * dir_finish's first step with --delete: remove the entries of d's DEST
 * directory that SOURCE lacks, unless SOURCE's listing was incomplete.
 * Excluded names stay, but for --delete-excluded.  Parent only.
 */
static void
del_dir(struct dir *d)
{
	struct dnames *dn = d->dn;
	size_t i;

	d->dn = NULL;
	if (d->partial) {
		char *p = dst_path(d, NULL);

		warn_path(1, p, "SOURCE directory not read completely: nothing deleted in it");
		free(p);
	}
	for (i = 0; i < dn->size && !d->partial && del_ok(); i++) {
		struct dname *e = &dn->tab[i];

		if (e->name == NULL || e->seen)
			continue;
		if (g.del < 2 && filter_out(d->rel, e->name, e->type == DT_DIR))
			continue;
		del_entry(d, e->name, e->type);
	}
	dn_free(dn);
}

/*
 * Give a finished directory its metadata, in the per-inode order (owner,
 * mode, xattrs, times), close it and release its parent.  Runs in the
 * parent when nothing is pending in the directory any more.
 */
static void
dir_finish(struct dir *d)
{
	struct dir *up = d->up;
	struct ent e;

	dir_unpark(d);
	while (d->irest < d->nrest)
		free(d->rest[d->irest++]);
	free(d->rest);
	if (d->dn)
		del_dir(d);
	ent_fill(&e, &d->st);
	if (g.shard_n)          /* other shards may still write here: -u fixes */
		e.mode |= S_IRWXU;
	/* --shard: what a shard would set on a directory DEST had already
	 * (another shard made it, or an earlier run) the final pass sets
	 * anyway; N shards would each set it again (5 calls a directory) */
	if (!d->nometa && !g.stop && !g.dryrun && !(g.shard_n && d->existed)) {
		struct xref xs = xref_of(d->sfd, -1, NULL), xd = xref_of(d->dfd, -1, NULL);
		mode_t mode = e.mode & 07777;
		struct rep r;
		struct stat now;
		int xa = 0;

		/* a directory DEST had (a mirror's re-run) is often right
		 * already: what its fstat shows right is not set again (for a
		 * directory, chown changes nothing else, and times are
		 * compared after the deletions above changed them) */
		if (!d->existed || fstat(d->dfd, &now) < 0)
			memset(&now, 0xff, sizeof now);         /* matches nothing */
		/* a directory DEST had is someone else's until now: its owner
		 * and every xattr and ACL SOURCE's lacks go */
		memset(&r, 0, sizeof r);
		if ((now.st_uid != e.uid || now.st_gid != e.gid) &&
		    meta_owner(&xd, &e, (d->jflags & JF_SGID) || d->existed, &mode, &r) < 0)
			warn_entry(1, 1, d, NULL, errno);
		if (d->sfd >= 0)
			xa = xattr_copy(&xs, &xd, d->existed ? XS_ALL :
			    (d->jflags & JF_DACL) ? XS_ACL : XS_ADD, &r);
		/* an ACL set or removed may have changed the mode bits */
		if ((xa || (now.st_mode & 07777) != mode) && meta_mode(&xd, &e, mode, -1) < 0)
			warn_entry(1, 1, d, NULL, errno);
		rep_warn(d, NULL, &r);
		if ((now.st_mtim.tv_sec != e.mtime || (uint64_t)now.st_mtim.tv_nsec != e.mtime_ns ||
		    now.st_atim.tv_sec != e.atime || (uint64_t)now.st_atim.tv_nsec != e.atime_ns) &&
		    meta_times(d->dfd, -1, NULL, &e) < 0)
			warn_entry(1, 1, d, NULL, errno);
	}
	if (!d->nometa && !g.stop && !g.dryrun && g.fsync && fsync(d->dfd) < 0)
		warn_entry(1, 1, d, NULL, errno);
	dir_close(d);
	if (d->lprev)
		d->lprev->lnext = d->lnext;
	else if (g.live == d)
		g.live = d->lnext;
	if (d->lnext)
		d->lnext->lprev = d->lprev;
	free(d->rel);
	free(d);
	if (up)
		dir_put(up);
	else
		g.rootdone = 1;
}

/* Drop one pending reference; the last one finishes the directory. */
static void
dir_put(struct dir *d)
{
	if (--d->pending == 0)
		dir_finish(d);
}

/* -- copy engine (worker side) -- */

/* Post progress for the parent: entry idx of the current job has begun. */
static void
ws_post(uint32_t idx, uint64_t bytes)
{
	w.ws->idx = idx;
	w.ws->bytes = bytes;
	w.ws->since = now_ms();
}

/*
 * n more bytes are copied: advance *pos (if any) and the shared progress
 * counter.  Returns -1 with EINTR when the worker was told to stop.
 */
static int
copy_advance(off_t *pos, int64_t n)
{
	if (pos)
		*pos += n;
	w.ws->bytes += n;
	if (got_sig) {
		errno = EINTR;
		return -1;
	}
	return 0;
}

/*
 * Copy `len` bytes, or up to end of file if len < 0, with read/write:
 * from the current offsets, or with pread/pwrite at *pos (advanced) if
 * pos is not NULL.  Returns bytes copied or -1 with errno; *werr is set
 * when the failing side was the destination.
 */
static int64_t
copy_rw(int in, int out, off_t *pos, int64_t len, int *werr)
{
	int64_t total = 0;
	ssize_t n, m, off;

	while (len < 0 || total < len) {
		size_t want = BUF_SIZE;

		if (len >= 0 && (int64_t)want > len - total)
			want = (size_t)(len - total);  /* less than want: fits */
		n = pos ? pread(in, w.buf, want, *pos) : read(in, w.buf, want);
		if (n < 0 && errno == EINTR && !got_sig)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		for (off = 0; off < n; off += m) {
			m = pos ? pwrite(out, w.buf + off, n - off, *pos + off) :
			    write(out, w.buf + off, n - off);
			if (m < 0 && errno == EINTR && !got_sig)
				m = 0;
			else if (m < 0) {
				*werr = 1;
				return -1;
			}
		}
		total += n;
		if (copy_advance(pos, n) < 0)
			return -1;
	}
	return total;
}

/*
 * Copy like copy_rw, with copy_file_range as the fast path; anything it
 * cannot do goes to read/write, including a 0 return at the start of a
 * non-empty file (procfs and the like).  `hint` is the size the walk saw:
 * a short return that reaches it is taken as end of file, which saves
 * the extra call that would only return 0.
 */
static int64_t
copy_range(int in, int out, off_t *pos, int64_t len, uint64_t hint, int *werr)
{
	static int no_cfr;
	int64_t total = 0, rest;
	ssize_t n;

	while (!no_cfr && (len < 0 || total < len)) {
		size_t want = COPY_CHUNK;
		off_t a = pos ? *pos : 0, b = a;

		if (len >= 0 && (int64_t)want > len - total)
			want = (size_t)(len - total);  /* less than want: fits */
		n = copy_file_range(in, pos ? &a : NULL, out, pos ? &b : NULL, want, 0);
		if (n > 0) {
			total += n;
			if (copy_advance(pos, n) < 0)
				return -1;
			if ((len >= 0 && total >= len) || ((size_t)n < want && (uint64_t)total == hint))
				return total;
			continue;
		}
		if (n == 0 && total > 0)
			return total;
		if (n < 0 && errno == EINTR && !got_sig)
			continue;
		if (n < 0 && (errno == ENOSPC || errno == EDQUOT || errno == EFBIG)) {
			*werr = 1;
			return -1;
		}
		if (n < 0 && errno == EIO)
			return -1;
		if (n < 0 && errno == ENOSYS)
			no_cfr = 1;
		break;          /* 0 at the start, EXDEV, EINVAL, ...: fall back */
	}
	/* not into n: a 32-bit ssize_t would truncate a count of 2 GiB or more */
	rest = copy_rw(in, out, pos, len < 0 ? -1 : len - total, werr);
	return rest < 0 ? -1 : total + rest;
}

/*
 * pwrite all of buf at off, retrying short writes and EINTR.  Returns 0,
 * or -1 with errno.  Worker.
 */
static int
writeall_at(int fd, const char *buf, size_t len, off_t off)
{
	ssize_t m;

	while (len > 0) {
		m = pwrite(fd, buf, len, off);
		if (m < 0 && errno == EINTR && !got_sig)
			continue;
		if (m < 0)
			return -1;
		buf += m;
		len -= m;
		off += m;
	}
	return 0;
}

/*
 * Copy a sparse file the way cp --sparse=auto does.  Where both files are
 * on one file system that shares extents (btrfs, xfs), a clone (FICLONE)
 * shares them all, holes included.  Otherwise only the data extents are
 * read, at their offsets, and blocks of zeros in them are left out, so
 * zero-filled and preallocated ranges become holes.  The copy ends where
 * the source ends now: at its size after a last hole, at the last byte
 * read if an extent ends early (a file shrinking while it is copied, or
 * /sys files whose size is a page): never padded.  Returns the copy's
 * length, or -1 with errno (*werr: DEST failed), or -2 when the source
 * cannot say where its data is (SEEK_DATA: EINVAL on /proc files): then
 * nothing was written and the caller reads it plainly.
 */
static int64_t
copy_sparse(int in, int out, int *werr)
{
	static const char zero[4096];
	off_t data = 0, hole, pos;
	struct stat st;
	ssize_t n, k, run, b;

	if (ioctl(out, FICLONE, in) == 0) {
		if (fstat(out, &st) < 0)
			return -1;
		if (copy_advance(NULL, st.st_blocks * 512 < st.st_size ?
		    st.st_blocks * 512 : st.st_size) < 0)
			return -1;
		return st.st_size;
	}
	for (;;) {
		pos = data;
		data = lseek(in, data, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0 && pos == 0 && (errno == EINVAL || errno == EOPNOTSUPP))
			return -2;
		if (data < 0)
			return -1;
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -1;
		for (pos = data; pos < hole; pos += n) {
			n = hole - pos < BUF_SIZE ? (ssize_t)(hole - pos) : BUF_SIZE;  /* bounded: fits */
			n = pread(in, w.buf, n, pos);
			if (n < 0 && errno == EINTR && !got_sig) {
				n = 0;
				continue;
			}
			if (n < 0)
				return -1;
			if (n == 0)
				goto end;       /* ended early: the copy ends here too */
			/* write the runs of blocks that are not all zeros */
			for (k = 0; k < n; k += run) {
				int z = memcmp(w.buf + k, zero, n - k < 4096 ? n - k : 4096) == 0;

				for (run = 0; k + run < n; run += b) {
					b = n - k - run < 4096 ? n - k - run : 4096;
					if ((memcmp(w.buf + k + run, zero, b) == 0) != z)
						break;
				}
				if (!z && writeall_at(out, w.buf + k, run, pos + k) < 0) {
					*werr = 1;
					return -1;
				}
			}
			if (copy_advance(NULL, n) < 0)
				return -1;
		}
		data = hole;
	}
	/* no data after `data`: the source is as long as it says now */
	if (fstat(in, &st) < 0)
		return -1;
	pos = st.st_size;
end:
	if (ftruncate(out, pos) < 0) {
		*werr = 1;
		return -1;
	}
	return pos;
}

/* An xref for the open descriptor fd, or for `name` in dirfd (fd -1). */
static struct xref
xref_of(int fd, int dirfd, const char *name)
{
	struct xref x = { .fd = fd, .dirfd = dirfd, .name = name, .pfd = -1, .adirfd = -1 };

	return x;
}

/* Release what xa_op opened for x. */
static void
xref_done(struct xref *x)
{
	if (x->pfd >= 0)
		close(x->pfd);
	x->pfd = -1;
}

/* Flags for an *at call on (dirfd, name): name "" is dirfd itself (O_PATH). */
static int
at_flags(const char *name)
{
	return name[0] ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH;
}

/*
 * No /proc (a FROM-scratch container, a rescue shell): act on the O_PATH
 * descriptor x->dirfd through the name it had, (x->adirfd, x->aname),
 * never followed, if that name still is that inode.  A swap between the
 * check and the call is the one by-name window left (see the overview);
 * it needs /proc missing and an attacker who can write the directory.
 */
static ssize_t
xa_byname(struct xref *x, int op, const char *name, void *buf, size_t n)
{
	struct xref y = xref_of(-1, x->adirfd, x->aname);
	struct stat a, b;
	ssize_t r;

	if (fstat(x->dirfd, &a) < 0 || fstatat(x->adirfd, x->aname, &b, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		errno = ESTALE;
		return -1;
	}
	r = xa_op(&y, op, name, buf, n);
	xref_done(&y);
	return r;
}

/*
 * One xattr operation (XA_*) on x: list into buf, get name's value into
 * buf, set it from buf, or remove it.  Returns what the system call does.
 * A name in a directory is acted on with the *xattrat calls and
 * AT_SYMLINK_NOFOLLOW (Linux 6.13); the name "" means the O_PATH
 * descriptor dirfd itself, which those calls refuse (EBADF), so it goes
 * through /proc/self/fd/N like every name on older kernels; on older kernels through
 * /proc/self/fd/N of an O_PATH|O_NOFOLLOW descriptor, which names the
 * entry itself even when it is a symlink (without /proc: ENOENT, and the
 * caller reports the xattr not copied); the same where they fail with
 * EPERM and the fallback works (a seccomp filter that predates them).
 * Never follows a symlink.  Parent and workers.
 */
static ssize_t
xa_op(struct xref *x, int op, const char *name, void *buf, size_t n)
{
	struct xattr_args0 a = { (uintptr_t)buf, n, 0 };
	ssize_t r;

	if (x->fd >= 0) {
		switch (op) {
		case XA_LIST: return flistxattr(x->fd, buf, n);
		case XA_GET: return fgetxattr(x->fd, name, buf, n);
		case XA_SET: return fsetxattr(x->fd, name, buf, n, 0);
		default: return fremovexattr(x->fd, name);
		}
	}
	if (!xa_noat && x->name[0] != '\0') {   /* (O_PATH descriptors: EBADF) */
		switch (op) {
		case XA_LIST:
			r = syscall(SYS_listxattrat, x->dirfd, x->name, at_flags(x->name), buf, n);
			break;
		case XA_GET:
			r = syscall(SYS_getxattrat, x->dirfd, x->name, at_flags(x->name), name,
			    &a, sizeof a);
			break;
		case XA_SET:
			r = syscall(SYS_setxattrat, x->dirfd, x->name, at_flags(x->name), name,
			    &a, sizeof a);
			break;
		default:
			r = syscall(SYS_removexattrat, x->dirfd, x->name, at_flags(x->name), name);
			break;
		}
		/* EPERM may be a container's seccomp filter that does not
		 * know the calls: the fallback tells */
		if (r >= 0 || (errno != ENOSYS && errno != EPERM))
			return r;
		if (errno == ENOSYS)
			xa_noat = 1;
	}
	if (x->name[0] == '\0') {      /* dirfd is the O_PATH descriptor */
		snprintf(x->proc, sizeof x->proc, "/proc/self/fd/%d", x->dirfd);
		if (x->aname && access("/proc/self/fd", X_OK) < 0)
			return xa_byname(x, op, name, buf, n);
	} else if (x->pfd < 0) {
		x->pfd = openat(x->dirfd, x->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (x->pfd < 0)
			return -1;
		snprintf(x->proc, sizeof x->proc, "/proc/self/fd/%d", x->pfd);
	}
	/* the path-following calls: they follow the magic link to the
	 * O_PATH inode and stop there (the l* calls would act on the link) */
	switch (op) {
	case XA_LIST: r = listxattr(x->proc, buf, n); break;
	case XA_GET: r = getxattr(x->proc, name, buf, n); break;
	case XA_SET: r = setxattr(x->proc, name, buf, n, 0); break;
	default: r = removexattr(x->proc, name); break;
	}
	if (r >= 0)
		xa_noat = 1;    /* (after EPERM: the *xattrat calls are blocked) */
	return r;
}

/*
 * List x's xattr names into *list (grown as needed; *cap its size; the
 * caller frees it when it is not `stack`).  Returns the list's length, 0
 * if none or the file system has none, -1 with errno on other errors.
 */
static ssize_t
xa_list(struct xref *x, char **list, size_t *cap, char *stack)
{
	ssize_t n;

	for (;;) {
		n = xa_op(x, XA_LIST, NULL, *list, *cap);
		if (n >= 0 || errno != ERANGE)
			break;
		n = xa_op(x, XA_LIST, NULL, NULL, 0);
		if (n < 0)
			break;
		if (*list != stack)
			free(*list);
		*cap = n + 256;
		*list = xmalloc(*cap);
	}
	if (n < 0 && (errno == ENOTSUP || errno == ENOSYS))
		return 0;
	return n;
}

/* Name `name` (an xattr) as the first one in r that was not copied. */
static void
xa_fail(struct rep *r, const char *name, int err)
{
	if (r->warn & W_XATTR)
		return;
	r->warn |= W_XATTR;
	r->xerr = err;
	snprintf(r->xname, sizeof r->xname, "%s", name);
}

/* Is `name` one of the n bytes of NUL-ended names at list? */
static int
xa_has(const char *list, ssize_t n, const char *name)
{
	const char *p;

	for (p = list; p < list + n; p += strlen(p) + 1)
		if (strcmp(p, name) == 0)
			return 1;
	return 0;
}

/*
 * Is `name` a file system's own view of something copied otherwise, never
 * to be copied or removed as such?  XFS lists its ACLs a second time as
 * trusted.SGI_ACL_FILE/DEFAULT (the system.posix_acl_* names carry them);
 * security.evm is written by the kernel only.  The list of libattr's
 * /etc/xattr.conf "skip" entries, which cp -a follows.
 */
static int
xa_skip(const char *name)
{
	return strncmp(name, "trusted.SGI_", 12) == 0 || strncmp(name, "xfsroot.", 8) == 0 ||
	    strncmp(name, "afs.", 4) == 0 || strcmp(name, "security.evm") == 0;
}

/*
 * Give dst the extended attributes of src (any type of entry), POSIX ACLs
 * (system.posix_acl_*) included.  Then remove from dst what src lacks:
 * with XS_ACL the ACLs a default ACL of DEST's directory made it inherit,
 * with XS_ALL every xattr (an existing directory being merged; its
 * security.selinux label, which the kernel gives, stays; so do names
 * xa_skip passes over).  Each xattr that
 * cannot be set or removed is a loss: the first is named in r (W_XATTR),
 * the others are still tried.  As non-root, trusted.* (which only root
 * sees) and security.selinux (the policy labels new files) are passed over
 * when refused, as cp -a does; a refused security.capability is named,
 * where cp -a is silent.  Returns how many xattrs it set or removed (or
 * tried to): none, and dst's mode is what it was.
 * Parent (directories) and workers.
 */
static int
xattr_copy(struct xref *src, struct xref *dst, int sync, struct rep *r)
{
	char stack[1024], dstack[512], *list = stack, *dl = dstack, *name, *val = NULL;
	size_t cap = sizeof stack, dcap = sizeof dstack, vcap = 0;
	ssize_t n, dn, vn;
	int tried = 0;

	n = xa_list(src, &list, &cap, stack);
	for (name = list; n > 0 && name < list + n; name += strlen(name) + 1) {
		if (xa_skip(name))
			continue;
		vn = xa_op(src, XA_GET, name, NULL, 0);
		if (vn >= 0 && (size_t)vn + 1 > vcap) {
			vcap = vn + 1;
			val = xrealloc(val, vcap);
		}
		if (vn >= 0)
			vn = xa_op(src, XA_GET, name, val, vcap);
		if (vn < 0) {
			if (errno != ENODATA && errno != EPERM && errno != EACCES)
				xa_fail(r, name, errno);
			continue;
		}
		tried++;
		if (xa_op(dst, XA_SET, name, val, vn) < 0 &&
		    !(g.euid != 0 && (errno == EPERM || errno == EACCES) &&
		    (strncmp(name, "trusted.", 8) == 0 || strcmp(name, "security.selinux") == 0)))
			xa_fail(r, name, errno);
	}
	if (n < 0) {
		xa_fail(r, "", errno);  /* SOURCE's list unreadable: none copied */
		n = 0;
		if (sync == XS_ALL)
			sync = XS_ADD;  /* ... and none of DEST's own removed (the
					 * ACLs a new entry inherited still go) */
	}
	if (sync == XS_ACL) {
		static const char *acl[] = { "system.posix_acl_access", "system.posix_acl_default" };
		unsigned i;

		for (i = 0; i < 2; i++) {
			if (xa_has(list, n, acl[i]))
				continue;
			tried++;
			if (xa_op(dst, XA_REMOVE, acl[i], NULL, 0) < 0 &&
			    errno != ENODATA && errno != ENOTSUP)
				xa_fail(r, acl[i], errno);
		}
	} else if (sync == XS_ALL && (dn = xa_list(dst, &dl, &dcap, dstack)) > 0) {
		for (name = dl; name < dl + dn; name += strlen(name) + 1) {
			if (xa_has(list, n, name) || strcmp(name, "security.selinux") == 0 ||
			    xa_skip(name))
				continue;
			tried++;
			if (xa_op(dst, XA_REMOVE, name, NULL, 0) < 0 && errno != ENODATA)
				xa_fail(r, name, errno);
		}
	}
	if (list != stack)
		free(list);
	if (dl != dstack)
		free(dl);
	free(val);
	return tried;
}

/*
 * chmod that never follows a symlink: fchmodat2 on (dirfd, name), name ""
 * being the O_PATH descriptor dirfd itself.  Kernels before 6.6 lack
 * fchmodat2: there a descriptor is changed through /proc/self/fd (which
 * names that very inode), and a name is refused.  Workers.
 */
static int
chmod_at(int dirfd, const char *name, mode_t mode)
{
	char proc[64];

	if (syscall(SYS_fchmodat2, dirfd, name, mode, at_flags(name)) == 0)
		return 0;
	if (errno != ENOSYS && errno != EPERM)
		return -1;
	if (name[0]) {
		errno = EOPNOTSUPP;
		return -1;
	}
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", dirfd);
	return chmod(proc, mode);
}

/*
 * Give a new inode (or an existing directory) the owner of the source
 * entry: the first of owner, xattrs, mode, times (chown clears set-uid
 * bits and capabilities).  x is the open file, or a name for symlinks and
 * special files (name "" being the O_PATH descriptor dirfd itself, never a
 * path).  Skipped when the inode is ours already, unless
 * always_chown (a set-gid directory, or one DEST had).  When chown is
 * refused as non-root, the group alone is tried and *mode loses set-uid
 * (and set-gid if the group could not be kept either), as cp -a does.  As
 * root without CAP_CHOWN (user namespaces, root_squash) it is a loss,
 * reported (W_OWNER) like cp's "failed to preserve ownership", and *mode
 * keeps only the owner's rwx bits, as cp's does: the group and others of
 * SOURCE are not those of the copy.  Returns 0, or -1 with errno on other
 * errors.
 */
static int
meta_owner(struct xref *x, const struct ent *e, int always_chown, mode_t *mode, struct rep *r)
{
	int rc, err;

	if (!always_chown && e->uid == g.euid && e->gid == g.egid)
		return 0;
	if (x->fd >= 0)
		rc = fchown(x->fd, e->uid, e->gid);
	else
		rc = fchownat(x->dirfd, x->name, e->uid, e->gid, at_flags(x->name));
	if (rc == 0 || (errno != EPERM && errno != EINVAL))
		return rc;
	err = errno;
	if (x->fd >= 0)
		rc = fchown(x->fd, (uid_t)-1, e->gid);
	else
		rc = fchownat(x->dirfd, x->name, (uid_t)-1, e->gid, at_flags(x->name));
	*mode &= rc < 0 ? ~(mode_t)(S_ISUID | S_ISGID) : ~(mode_t)S_ISUID;
	if (g.euid == 0) {
		*mode &= S_IRWXU;
		r->warn |= W_OWNER;
		r->oerr = err;
	}
	return 0;
}

/*
 * The mode, after owner and xattrs (setting an ACL sets the mode too, to
 * what it was in SOURCE).  Not for symlinks; skipped when the inode was
 * created with it (created_mode, -1: unknown).  Returns 0 or -1.
 */
static int
meta_mode(struct xref *x, const struct ent *e, mode_t mode, int created_mode)
{
	if (S_ISLNK(e->mode) || mode == (mode_t)created_mode)
		return 0;
	return x->fd >= 0 ? fchmod(x->fd, mode) : chmod_at(x->dirfd, x->name, mode);
}

/*
 * Times last: nanosecond atime and mtime, never following a symlink.  Name
 * "" is the O_PATH descriptor dirfd (kernels before 5.8 refuse
 * AT_EMPTY_PATH here: /proc/self/fd names the same inode, a symlink too).
 */
static int
meta_times(int fd, int dirfd, const char *name, const struct ent *e)
{
	struct timespec ts[2] = {
		{ e->atime, e->atime_ns }, { e->mtime, e->mtime_ns },
	};
	char proc[64];

	if (name == NULL)
		return futimens(fd, ts);
	if (utimensat(dirfd, name, ts, at_flags(name)) == 0)
		return 0;
	if (name[0] || errno != EINVAL)
		return -1;
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", dirfd);
	return utimensat(AT_FDCWD, proc, ts, 0);
}

/*
 * Create the unnamed (or hidden) destination file in dirfd.  Returns the
 * descriptor, or -1 with errno.  With TMP_NAMED the hidden name is kept in
 * w.tmpname so an interrupted worker can remove it.
 */
static int
tmp_create(int dirfd, mode_t mode)
{
	struct stat st;
	int fd;

	if (g.tmpmode != TMP_NAMED) {
		fd = openat(dirfd, ".", O_TMPFILE | (g.verify ? O_RDWR : O_WRONLY) | O_CLOEXEC, mode);
		if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
			return fd;
	}
	for (;;) {
		tmp_name(w.tmpname, sizeof w.tmpname);
		fd = openat(dirfd, w.tmpname, (g.verify ? O_RDWR : O_WRONLY) | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			break;
		/* the lock tells other runs' tmp_sweep the file is alive; one
		 * that swept it in the instant before the lock leaves it
		 * unlinked: take another name.  Where locks are not supported
		 * (ENOLCK: NFS without lockd) no sweep can take it either. */
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK)
			st.st_nlink = 0;
		else if (fstat(fd, &st) < 0)
			st.st_nlink = 1;        /* cannot tell: keep it */
		if (st.st_nlink > 0) {
			w.tmpdir = dirfd;
			return fd;
		}
		close(fd);
	}
	w.tmpname[0] = '\0';
	return -1;
}

/* Remove the hidden temporary, if any (error and abort paths). */
static void
tmp_discard(void)
{
	if (w.tmpname[0]) {
		unlinkat(w.tmpdir, w.tmpname, 0);
		w.tmpname[0] = '\0';
	}
}

/*
 * Replace `name` in dirfd by the entry now at the hidden name tmp, which
 * the caller created.  rename() is atomic: the old entry stays until the
 * new one takes its place.  Returns 0 or -1 (the hidden name is removed).
 */
static int
tmp_rename(int dirfd, const char *tmp, const char *name)
{
	struct stat st;
	int e;

	if (renameat(dirfd, tmp, dirfd, name) == 0) {
		/* rename onto another link of the same inode does nothing */
		if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0)
			unlinkat(dirfd, tmp, 0);
		return 0;
	}
	e = errno == ENOTEMPTY || errno == EEXIST ? EISDIR : errno;
	unlinkat(dirfd, tmp, 0);
	errno = e;
	return -1;
}

/*
 * Give the finished file fd its name in dirfd.  O_TMPFILE files are
 * linked; a name that exists already is replaced through a hidden name
 * and rename.  Returns 0 or -1 with errno.
 */
static int
tmp_commit(int fd, int dirfd, const char *name)
{
	char proc[64], hide[TMP_NAME_MAX];
	int r;

	if (w.tmpname[0]) {
		r = tmp_rename(dirfd, w.tmpname, name);
		w.tmpname[0] = '\0';
		return r;
	}
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	for (;;) {
		if (g.tmpmode == TMP_EMPTY)
			r = linkat(fd, "", dirfd, name, AT_EMPTY_PATH);
		else
			r = linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
		if (r == 0 || errno != EEXIST)
			break;
		/* the name exists: replace it through a hidden name, locked
		 * before it appears so that no other run's tmp_sweep takes it
		 * (without locks, ENOLCK, a sweep could; the rename then fails
		 * visibly) */
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno != ENOLCK)
			return -1;
		tmp_name(hide, sizeof hide);
		if (g.tmpmode == TMP_EMPTY)
			r = linkat(fd, "", dirfd, hide, AT_EMPTY_PATH);
		else
			r = linkat(AT_FDCWD, proc, dirfd, hide, AT_SYMLINK_FOLLOW);
		if (r < 0 && errno == EEXIST)
			continue;
		if (r < 0)
			break;
		return tmp_rename(dirfd, hide, name);
	}
	return r;
}

/*
 * Open entry e's source file for reading: never following a symlink,
 * never blocking on a FIFO swapped in since the walk.  On failure fill *r
 * (R_VANISHED if it is gone; for an entry the walk did not stat, R_RESTAT
 * when a symlink or a socket has its name: the parent looks again, as
 * ent_check sends back any other type) and return -1.
 */
static int
src_open(int sfd, const struct ent *e, struct rep *r)
{
	int fd = src_openat(sfd, ent_name(e), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		r->what = errno == ENOENT ? R_VANISHED : R_FAIL_SRC;
		r->err = errno;
		if ((e->flags & ENT_NOSTAT) && (errno == ELOOP || errno == ENXIO)) {
			r->what = R_RESTAT;
			r->val = 1;
			r->err = 0;
		}
	}
	return fd;
}

/*
 * pread until len bytes or end of file, through short reads and EINTR.
 * Returns the bytes read or -1 with errno.
 */
static ssize_t
pread_full(int fd, char *buf, size_t len, off_t off)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = pread(fd, buf + got, len - got, off + got);
		if (n < 0 && errno == EINTR && !got_sig)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += n;
	}
	return got;
}

/*
 * --verify: read back source and copy from the start and compare.  (The
 * copy is read through the page cache: this proves what was written, not
 * the medium.)  Returns 0 if equal, -1 if they differ, or an errno from
 * reading the source.  Worker.
 */
static int
verify(int in, int out)
{
	char *a = w.buf, *b = w.buf + BUF_SIZE / 2;
	off_t off = 0;
	ssize_t n, m;

	for (;;) {
		n = pread_full(in, a, BUF_SIZE / 2, off);
		if (n < 0)
			return errno;
		m = pread_full(out, b, BUF_SIZE / 2, off);
		if (m < 0)
			return -1;
		if (n != m || memcmp(a, b, n) != 0)
			return -1;
		if (n == 0)
			return 0;
		off += n;
	}
}

/*
 * Are n bytes at a and b equal?  memcmp without its order, 8 bytes at a
 * time: musl's memcmp goes byte by byte, which made -c CPU-bound.
 */
static int
same_bytes(const char *a, const char *b, size_t n)
{
	uint64_t x, y;

	for (; n >= 8; n -= 8, a += 8, b += 8) {
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
			return 0;
	}
	return memcmp(a, b, n) == 0;
}

/*
 * -c: are the first `size` bytes of the file dname in dfd those of the
 * source `in`?  (Both had that size when stat'ed; a short read ends the
 * compare.)  Returns 0 if not (or the copy cannot be read: it is copied
 * again), -1 if they are the same, or errno if reading the source failed.
 * Runs in a worker (buf: w.buf), or in the parent with -n (g.cbuf); buf
 * holds BUF_SIZE bytes.  The offset of `in` is left alone (pread).
 */
static int
same_content(int in, int dfd, const char *dname, uint64_t size, char *buf)
{
	char *a = buf, *b = buf + BUF_SIZE / 2;
	int out = openat(dfd, dname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	ssize_t n;
	uint64_t off = 0;
	size_t want;

	if (out < 0)
		return 0;
	for (; off < size; off += n) {
		want = size - off < BUF_SIZE / 2 ? (size_t)(size - off) : BUF_SIZE / 2;  /* bounded */
		if ((n = pread(in, a, want, off)) < 0) {
			n = errno;
			close(out);
			return (int)n;
		}
		if (pread(out, b, want, off) != n || !same_bytes(a, b, n) ||
		    (size_t)n < want)
			break;
	}
	close(out);
	return off >= size ? -1 : 0;
}

/*
 * -u: is DEST's dname a regular file of e's size and mtime already?  The
 * mtimes are compared at the precision DEST's file system stores
 * (g.mwindow: ext4 with 128-byte inodes keeps seconds, vfat 2 seconds):
 * DEST's may be older than SOURCE's by less than that.  Worker.
 */
static int
up_to_date(int dfd, const char *dname, const struct ent *e)
{
	struct stat ds;
	int64_t sec, d;

	if (fstatat(dfd, dname, &ds, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(ds.st_mode) ||
	    (uint64_t)ds.st_size != e->size)
		return 0;
	sec = e->mtime - (int64_t)ds.st_mtim.tv_sec;
	if (sec < 0 || sec > 4)
		return 0;
	d = sec * 1000000000 + (int64_t)e->mtime_ns - ds.st_mtim.tv_nsec;
	return d == 0 || (d > 0 && d <= g.mwindow);
}

/*
 * Did the source file change while it was read (size or mtime no longer
 * what the walk saw)?  When it did not, but fewer or more bytes were read
 * than its size says, it is a file whose size is not its content (/proc,
 * /sys): copied as read, like cp.  Worker.
 */
static int
src_changed(int in, const struct ent *e)
{
	struct stat st;

	return fstat(in, &st) < 0 || (uint64_t)st.st_size != e->size ||
	    st.st_mtim.tv_sec != e->mtime || (uint64_t)st.st_mtim.tv_nsec != e->mtime_ns;
}

/*
 * Copy one regular file.  Returns 0 when it is copied with all its
 * metadata; 1 when copied with something to report in *r (R_CHANGED: it
 * changed while being read and is copied as read; W_*: some metadata could
 * not be kept) or skipped (R_SKIP); -1 when not copied (*r says why:
 * R_RACED when it is no longer the file the walk saw).  Owner, mode and
 * times come from fstat of the descriptor read.  A hidden name (TMP_NAMED)
 * is created 0600 and gets its mode after its owner: no one else can open
 * it meanwhile.
 */
static int
copy_reg(int sfd, int dfd, const struct ent *e, uint32_t jflags, struct rep *r)
{
	const char *sname = ent_name(e), *dname = ent_dname(e);
	int in, out, werr = 0, note = 0, same, dacl = (jflags & JF_DACL) != 0;
	int64_t n = -2;
	mode_t mode, cmode;
	struct xref xs, xd;
	struct ent me, se;
	const struct ent *ue = e;       /* -u compares with this */
	struct stat st;

	if (g.checksum) {
		/* -c reads SOURCE whatever -u says: open it first, check it
		 * (ent_check), and let that fstat's size and mtime decide -u */
		if ((in = src_open(sfd, e, r)) < 0)
			return -1;
		if (ent_check(in, e, &me, r, &st) < 0) {
			close(in);
			return -1;
		}
		memcpy(&se, &me, sizeof se);
		se.size = st.st_size;
		se.blocks = st.st_blocks;
		if (up_to_date(dfd, dname, &se) &&
		    (same = same_content(in, dfd, dname, se.size, w.buf)) != 0) {
			close(in);
			r->what = same > 0 ? R_FAIL_SRC : R_SKIP;
			r->err = same > 0 ? same : 0;
			/* counted as the walk counted it (progress totals) */
			r->val = same > 0 ? 0 : (e->flags & ENT_NOSTAT) ?
			    data_bytes(se.size, se.blocks) : data_bytes(e->size, e->blocks);
			return same > 0 ? -1 : 1;
		}
		/* not up to date, or same size and time but other bytes: copy */
	} else {
		if (g.update && (e->flags & ENT_NOSTAT)) {
			/* the walk did not stat it: -u decides on this worker's
			 * stat, checked against readdir as ent_check does */
			if (fstatat(sfd, sname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				r->what = errno == ENOENT ? R_VANISHED : R_FAIL_SRC;
				r->err = errno;
				return -1;
			}
			if (nostat_back(&st, e, r) < 0)
				return -1;
			memcpy(&se, e, sizeof se);
			se.size = st.st_size;
			se.blocks = st.st_blocks;
			se.mtime = st.st_mtim.tv_sec;
			se.mtime_ns = st.st_mtim.tv_nsec;
			ue = &se;
		}
		if (g.update && up_to_date(dfd, dname, ue)) {
			r->what = R_SKIP;
			r->val = data_bytes(ue->size, ue->blocks);     /* for the count */
			return 1;
		}
		if ((in = src_open(sfd, e, r)) < 0)
			return -1;
		if (ent_check(in, e, &me, r, NULL) < 0) {
			close(in);
			return -1;
		}
	}
	e = &me;                /* from here on, names are sname and dname */
	mode = e->mode & 07777;
	/* hidden names are created 0600 (no one else can open them before
	 * their owner is set); as non-root, writable by the owner until the
	 * mode is set at the end: setting user.* xattrs needs write permission */
	cmode = g.tmpmode == TMP_NAMED ? 0600 : (e->mode & 0777) | (g.euid ? S_IWUSR : 0);
	out = tmp_create(dfd, cmode);
	if (out < 0) {
		r->what = R_FAIL_DST;
		r->err = errno;
		close(in);
		return -1;
	}
	if (e->size == 0)
		n = copy_rw(in, out, NULL, -1, &werr);  /* procfs-like: size 0, data */
	else if (e->blocks * 512 < e->size)
		n = copy_sparse(in, out, &werr);        /* -2: cannot tell, read it all */
	if (n == -2)
		n = copy_range(in, out, NULL, -1, e->size, &werr);
	if (n < 0) {
		r->what = werr ? R_FAIL_DST : R_FAIL_SRC;
		goto fail;
	}
	if ((uint64_t)n != e->size && src_changed(in, e)) {
		note = R_CHANGED;
		r->val = n;
	}
	if (g.verify && (r->err = verify(in, out)) != 0) {
		r->what = r->err < 0 ? R_BADCOPY : R_FAIL_SRC;
		r->err = r->err < 0 ? 0 : r->err;
		tmp_discard();
		close(in);
		close(out);
		return -1;
	}
	r->what = R_FAIL_DST;
	xs = xref_of(in, -1, NULL);
	xd = xref_of(out, -1, NULL);
	if (meta_owner(&xd, e, jflags & JF_SGID, &mode, r) < 0)
		goto fail;
	xattr_copy(&xs, &xd, dacl ? XS_ACL : XS_ADD, r);
	if (meta_mode(&xd, e, mode, dacl ? -1 : (int)cmode) < 0 || meta_times(out, -1, NULL, e) < 0 ||
	    (g.fsync && fsync(out) < 0) || tmp_commit(out, dfd, dname) < 0)
		goto fail;
	close(in);
	if (close(out) < 0) {
		r->err = errno;
		return -1;
	}
	r->what = note;
	return note || r->warn ? 1 : 0;
fail:
	r->err = errno;
	tmp_discard();
	close(in);
	close(out);
	return -1;
}

/*
 * Create a symlink, FIFO, socket or device for e in dfd: at `name`, or,
 * when that exists, at a hidden name left in hide (else hide is "") for
 * the caller to rename into place once the node has its metadata.  mknod
 * and symlink give no descriptor, and a user who can write dfd could put
 * something else at the name in the meantime; so the node is opened as a
 * path (O_PATH | O_NOFOLLOW) and checked to be what was just made: its
 * type, device numbers, new files' owner, one link.  Returns that
 * descriptor, -1 with errno, or -2 if something else took the name.
 */
static int
make_node(int dfd, const char *name, const struct ent *e, const char *target, char *hide)
{
	const char *at = name;
	struct stat st;
	int r, fd;

	hide[0] = '\0';
	for (;;) {
		if (S_ISLNK(e->mode))
			r = symlinkat(target, dfd, at);
		else
			r = mknodat(dfd, at, e->mode & S_IFMT, e->rdev);    /* no permissions yet */
		if (r == 0 || errno != EEXIST)
			break;
		at = tmp_name(hide, TMP_NAME_MAX);
	}
	if (r < 0) {
		hide[0] = '\0';
		return -1;
	}
	fd = openat(dfd, at, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = fd < 0 && errno == ENOENT ? -2 : -1;
		close_keep(fd);
		if (hide[0] && r == -1)
			unlinkat(dfd, hide, 0);
		hide[0] = '\0';
		return r;
	}
	if ((st.st_mode & S_IFMT) != (e->mode & S_IFMT) || st.st_nlink != 1 ||
	    st.st_uid != g.newuid || ((S_ISCHR(e->mode) || S_ISBLK(e->mode)) &&
	    st.st_rdev != e->rdev)) {
		close(fd);
		hide[0] = '\0';
		return -2;
	}
	/* another node pcopy made, renamed over the name, passes the checks
	 * above: a symlink must at least point where this one does */
	if (S_ISLNK(e->mode)) {
		char have[PATH_MAX + 1];
		ssize_t n = readlinkat(fd, "", have, sizeof have);

		if (n < 0 || (size_t)n != strlen(target) || memcmp(have, target, n) != 0) {
			close(fd);
			hide[0] = '\0';
			return -2;
		}
	}
	return fd;
}

/*
 * -u: is DEST's dname already this symlink, FIFO, socket or device: same
 * type, target (symlinks) or device number, permission bits and
 * nanosecond mtime?  Then it is left alone, as an up-to-date file is.
 * Worker side.
 */
static int
node_same(int dfd, const char *dname, const struct ent *e, const char *target, size_t n)
{
	char have[PATH_MAX + 1];
	struct stat ds;

	if (fstatat(dfd, dname, &ds, AT_SYMLINK_NOFOLLOW) < 0 ||
	    (ds.st_mode & S_IFMT) != (e->mode & S_IFMT) ||
	    ds.st_mtim.tv_sec != e->mtime || (uint64_t)ds.st_mtim.tv_nsec != e->mtime_ns)
		return 0;
	if (S_ISLNK(e->mode))
		return (size_t)ds.st_size == n &&
		    readlinkat(dfd, dname, have, sizeof have) == (ssize_t)n &&
		    memcmp(have, target, n) == 0;
	return (ds.st_mode & 07777) == (e->mode & 07777) &&
	    ((!S_ISCHR(e->mode) && !S_ISBLK(e->mode)) || ds.st_rdev == e->rdev);
}

/*
 * Copy a symlink, FIFO, socket or device node: never opened for reading,
 * never followed.  The source is opened as a path and checked to be the
 * entry the walk saw; its target, xattrs and metadata are read from that
 * descriptor.  The copy gets owner, xattrs, mode and times through its
 * own O_PATH descriptor (make_node), so no by-name call can reach a file
 * a user swapped in.  Returns like copy_reg.
 */
static int
copy_node(int sfd, int dfd, const struct ent *e, uint32_t jflags, struct rep *r)
{
	char target[PATH_MAX + 1], hide[TMP_NAME_MAX];
	const char *dname = ent_dname(e);
	int dacl = (jflags & JF_DACL) && !S_ISLNK(e->mode), in, out = -1;
	struct xref xs, xd;
	struct ent me;
	ssize_t n = 0;
	mode_t mode;

	in = openat(sfd, ent_name(e), O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		r->what = errno == ENOENT ? R_VANISHED : R_FAIL_SRC;
		r->err = errno;
		return -1;
	}
	if (ent_check(in, e, &me, r, NULL) < 0) {
		close(in);
		return -1;
	}
	if (S_ISLNK(me.mode) && (n = readlinkat(in, "", target, sizeof target - 1)) < 0) {
		r->what = R_FAIL_SRC;
		r->err = errno;
		close(in);
		return -1;
	}
	target[n] = '\0';
	if (g.update && node_same(dfd, dname, &me, target, (size_t)n)) {
		close(in);
		r->what = R_SKIP;
		return 1;
	}
	mode = me.mode & 07777;
	xs = xref_of(-1, in, "");
	xs.adirfd = sfd;
	xs.aname = ent_name(e);
	r->what = R_FAIL_DST;
	out = make_node(dfd, dname, &me, target, hide);
	if (out == -2) {
		close(in);
		r->what = R_RACED;
		r->val = 1;
		return -1;
	}
	if (out < 0)
		goto fail;
	xd = xref_of(-1, out, "");       /* no by-name fallback in DEST */
	if (meta_owner(&xd, &me, jflags & JF_SGID, &mode, r) < 0)
		goto unmake;
	xattr_copy(&xs, &xd, dacl ? XS_ACL : XS_ADD, r);
	if (meta_mode(&xd, &me, mode, -1) < 0 ||        /* made with none */
	    meta_times(-1, out, "", &me) < 0)
		goto unmake;
	xref_done(&xd);
	xref_done(&xs);
	close(out);
	close(in);
	if (hide[0] && tmp_rename(dfd, hide, dname) < 0) {
		r->err = errno;         /* tmp_rename removed the hidden name */
		return -1;
	}
	r->what = 0;
	return r->warn ? 1 : 0;
unmake:
	r->err = errno;
	xref_done(&xd);
	if (hide[0])
		unlinkat(dfd, hide, 0);
	goto out;
fail:
	r->err = errno;
out:
	xref_done(&xs);
	close_keep(out);
	close_keep(in);
	return -1;
}

/* -- worker -- */

/* Worker's SIGTERM: finish nothing, remove the temporary, leave. */
static void
on_term(int sig)
{
	got_sig = sig;
}

/*
 * Run one job: copy each entry, post progress in the shared slot, and send
 * one MSG_DONE with a report for every entry that was not simply copied.
 */
static void
wk_job(struct msg *m, int sfd, int dfd)
{
	struct {
		struct msg h;
		struct rep r[BATCH_FILES + 1];
	} res;
	char *p = (char *)(m + 1);
	uint32_t i, nrep = 0;
	int64_t t0 = now_ns();

	memset(&res.h, 0, sizeof res.h);
	w.ws->bytes = 0;
	w.ws->job = m->id;
	for (i = 0; i < m->count && !got_sig; i++) {
		struct ent *e = (struct ent *)p;
		struct rep *r = &res.r[nrep];
		uint64_t b0 = w.ws->bytes;
		int rc;

		p += ent_size(e);
		ws_post(i, b0);
		if (e->flags & ENT_DROP)
			continue;
		memset(r, 0, sizeof *r);
		if (S_ISREG(e->mode))
			rc = copy_reg(sfd, dfd, e, m->flags, r);
		else
			rc = copy_node(sfd, dfd, e, m->flags, r);
		if (rc != 0 && nrep < BATCH_FILES + 1) {
			r->idx = i;
			r->wrote = w.ws->bytes - b0;
			nrep++;
		}
	}
	if (got_sig) {
		tmp_discard();
		_exit(128 + SIGTERM);
	}
	w.ws->idx = m->count;
	res.h.type = MSG_DONE;
	res.h.id = m->id;
	res.h.count = nrep;
	res.h.bytes = w.ws->bytes;
	res.h.ns = now_ns() - t0;
	res.h.len = nrep * sizeof(struct rep);
	if (msg_send(w.sock, &res, sizeof res.h + res.h.len, NULL, 0) < 0)
		_exit(1);       /* the parent is gone */
	w.ws->job = 0;
}

/*
 * The worker's life: wait for a job, do it, report, until end of file on
 * the channel.  Never returns.
 */
static void
wk_main(int sock, struct wstat *ws)
{
	static uint64_t msgbuf[MSG_MAX / 8];
	struct sigaction sa = { .sa_handler = on_term };
	int fds[MSG_FDS], prio;
	ssize_t n;

	w.sock = sock;
	w.ws = ws;
	in_worker = 1;
	w.buf = malloc(BUF_SIZE);
	if (w.buf == NULL)
		_exit(3);       /* the parent names the death */
	umask(0);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGINT, SIG_IGN);        /* ^C goes to the parent, which tells us */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGWINCH, SIG_DFL);      /* the terminal is the parent's */
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(1);
	/* The parent's walk feeds every worker and runs alone: with more
	 * workers than CPUs (-j is 4 a CPU), the scheduler's even shares let
	 * them starve it, and they then wait for work.  A lower priority
	 * than the parent's (failure to set it is harmless) keeps the walk
	 * ahead: a mirror's re-run of the Linux source went 8-13% faster
	 * (bench/mirror.sh), a plain copy the same. */
	errno = 0;
	prio = getpriority(PRIO_PROCESS, 0);
	if (errno == 0)
		setpriority(PRIO_PROCESS, 0, prio + WORKER_NICE);
	for (;;) {
		n = msg_recv(sock, msgbuf, sizeof msgbuf, fds);
		if (got_sig)
			_exit(128 + SIGTERM);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(n == 0 ? 0 : 1);
		if (fds[0] < 0 || fds[1] < 0)
			_exit(1);       /* a job always carries its two directories */
		wk_job((struct msg *)msgbuf, fds[0], fds[1]);
		close(fds[0]);
		close(fds[1]);
	}
}

/* -- worker pool (parent side) -- */

/*
 * Fork the worker for slot i.  The child closes every descriptor that is
 * not its own (siblings' channels included, or they would never see end
 * of file) and runs wk_main.  Returns 0 or -1.
 */
static int
wk_spawn(unsigned i)
{
	int sv[2];
	unsigned j;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (fflush(stdout) == EOF && g.outerr == 0)
		g.outerr = errno;       /* for stdout_check */
	fflush(stderr);
	switch (pid = fork()) {
	case -1:
		close(sv[0]);
		close(sv[1]);
		return -1;
	case 0:
		close(sv[0]);
		for (j = 0; j < g.jobs; j++)
			if (g.wk[j].fd >= 0)
				close(g.wk[j].fd);
		close(g.sigpipe[0]);
		close(g.sigpipe[1]);
		if (sv[1] != 3) {
			dup2(sv[1], 3);
			close(sv[1]);
		}
#ifdef SYS_close_range
		syscall(SYS_close_range, 4, ~0U, 0);    /* dir fds of the walk */
#endif
		wk_main(3, &g.slot[i]);
	}
	close(sv[1]);
	g.wk[i].pid = pid;
	g.wk[i].fd = sv[0];
	g.wk[i].nfly = 0;
	g.wk[i].broken = 0;
	memset(&g.slot[i], 0, sizeof g.slot[i]);
	return 0;
}

/*
 * A worker's channel reached end of file: reap it and say how it ended.
 * Returns the wait status.
 */
static int
wk_reap(unsigned i)
{
	struct worker *k = &g.wk[i];
	int st = 0;

	close(k->fd);
	k->fd = -1;
	while (waitpid(k->pid, &st, 0) < 0 && errno == EINTR)
		;
	k->pid = 0;
	return st;
}

/* Send a signal to every live worker. */
static void
wk_signal(int sig)
{
	unsigned i;

	for (i = 0; i < g.jobs; i++)
		if (g.wk[i].pid > 0)
			kill(g.wk[i].pid, sig);
}

/* -- progress -- */

/*
 * How the progress line estimates.  Time goes into two things: a cost per
 * file (open, create, metadata, link) and a cost per byte.  Both are
 * learned as the copy runs, in seconds of worker time: each finished job
 * tells how many files and bytes it had and how long its worker took
 * (struct msg ns), and every tick a worker spends inside one job tells how
 * far it got (a large file's bytes advance long before it is done).  A
 * weighted least-squares fit of  seconds = files * cf + MB * cb  over what
 * was seen, older observations fading with PROGRESS_TAU, gives cf and cb;
 * two weak priors (PRIOR_CF, PRIOR_CB) settle what the data cannot tell
 * apart, such as a tree whose files all have the same size.  Then
 *   work      = files * cf + MB * cb   (done, and total from the census)
 *   percent   = work done / total work: the fraction of the time, not of a
 *               count, so one large file moves it as its bytes move;
 *   ETA       = work left / work done per second (smoothed), which
 *               measures how many workers really progress at once.
 * While the totals are still being counted the line says "scanning" and
 * the ETA is a lower bound (">0:12"); sparse files count the data their
 * blocks hold (data_bytes), as only that is copied.
 */

/* Totals shown: the census's if it is ahead, the walk's when it is done. */
static void
progress_totals(uint64_t *files, uint64_t *bytes, int *final)
{
	uint64_t cf, cb;
	int done;

	*files = g.found;
	*bytes = g.bytes_found;
	*final = !g.walking;
	if (g.walking && g.cs != NULL) {
		done = g.cs->done;
		__sync_synchronize();   /* done before the totals it vouches for */
		cf = g.cs->files;
		cb = g.cs->bytes;
		*files = cf > *files ? cf : *files;
		*bytes = cb > *bytes ? cb : *bytes;
		*final = done;
	}
}

/*
 * Bytes written so far, counting the work in progress in each worker and
 * the bytes of files that failed (the time was spent all the same).
 */
static uint64_t
progress_bytes(void)
{
	uint64_t b = g.bytes_done + g.bytes_lost + g.bytes_skipped;
	unsigned i;

	for (i = 0; i < g.jobs; i++)
		if (g.wk[i].nfly > 0 && g.slot[i].job == g.wk[i].fly[0]->id)
			b += g.slot[i].bytes;
	return b;
}

/* Learn from one observation: n files and mb MB took t s of worker time. */
static void
model_add(double n, double mb, double t)
{
	double wt;

	if (t <= 0 || n < 0 || mb < 0 || (n == 0 && mb == 0))
		return;
	wt = 1 / (t > 1e-3 ? t : 1e-3);  /* relative errors: a 2 s job is no louder than a 2 ms one */
	g.m_nn += wt * n * n;
	g.m_nb += wt * n * mb;
	g.m_bb += wt * mb * mb;
	g.m_nt += wt * n * t;
	g.m_bt += wt * mb * t;
	g.m_seen++;
}

/* Solve the normal equations (with the priors) for g.cf and g.cb. */
static void
model_solve(void)
{
	double ln = PRIOR_S / (PRIOR_CF * PRIOR_CF), lb = PRIOR_S / (PRIOR_CB * PRIOR_CB);
	double a = g.m_nn + ln, b = g.m_nb, d = g.m_bb + lb;
	double y1 = g.m_nt + ln * PRIOR_CF, y2 = g.m_bt + lb * PRIOR_CB;
	double det = a * d - b * b;

	g.cf = (y1 * d - b * y2) / det;
	g.cb = (a * y2 - b * y1) / det;
	if (g.cf < 0) {                 /* costs are never negative */
		g.cf = 0;
		g.cb = y2 / d;
	} else if (g.cb < 0) {
		g.cb = 0;
		g.cf = y1 / a;
	}
}

/*
 * Worker i finished a job (result m): learn from the part of it the ticks
 * have not already seen.  Parent only, called before job_done.
 */
static void
model_job(unsigned i, const struct msg *m)
{
	struct worker *k = &g.wk[i];
	double n = k->fly[0]->nent, mb = m->bytes / 1e6, t = m->ns / 1e9;

	if (k->fedjob == m->id) {
		n -= k->fed_n;
		mb -= k->fed_b;
		t -= k->fed_t;
		k->fedjob = 0;
	}
	model_add(n, mb < 0 ? 0 : mb, t);
}

/*
 * Every TICK_MS: fade old observations and learn from each worker that
 * spent the whole tick in one job.
 */
static void
model_tick(int64_t t)
{
	double dt = (t - g.m_tlast) / 1000.0, f;
	unsigned i;

	if (g.m_tlast == 0)
		dt = 0;
	f = 1 / (1 + dt / PROGRESS_TAU);        /* exp(-dt/tau) for a short tick */
	g.m_nn *= f;
	g.m_nb *= f;
	g.m_bb *= f;
	g.m_nt *= f;
	g.m_bt *= f;
	for (i = 0; i < g.jobs; i++) {
		struct worker *k = &g.wk[i];
		uint32_t job = g.slot[i].job, idx = g.slot[i].idx;
		uint64_t bytes = g.slot[i].bytes;

		if (k->nfly == 0)
			job = 0;
		if (job != 0 && job == k->pjob && dt > 0 && idx >= k->pidx && bytes >= k->pbytes) {
			double dn = idx - k->pidx, db = (bytes - k->pbytes) / 1e6;

			if (k->fedjob != job) {
				k->fedjob = job;
				k->fed_n = k->fed_b = k->fed_t = 0;
				k->acc_n = k->acc_b = k->acc_t = 0;
			}
			k->acc_n += dn;
			k->acc_b += db;
			k->acc_t += dt;
			if (k->acc_t >= 0.25) { /* whole copy calls, idle ticks included */
				model_add(k->acc_n, k->acc_b, k->acc_t);
				k->fed_n += k->acc_n;
				k->fed_b += k->acc_b;
				k->fed_t += k->acc_t;
				k->acc_n = k->acc_b = k->acc_t = 0;
			}
		}
		k->pjob = job;
		k->pidx = idx;
		k->pbytes = bytes;
	}
	g.m_tlast = t;
	model_solve();
}

/*
 * Seconds as "1:02:03" or "2:03"; "?" from 99,999 hours on (a rate decayed
 * to almost nothing), which also keeps the conversion within a 32-bit long.
 */
static const char *
fmt_secs(char *buf, size_t n, double s)
{
	long t;

	if (!(s < 99999 * 3600.0))
		return "?";
	t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
	return buf;
}

/*
 * Join the fields (shown in PF_* order, "" for none) into out, at most
 * width columns: while too wide, drop or shorten the least important
 * field first -- the rate, the word "files", the bytes, the files, the
 * ETA, the percentage's decimals -- never cutting one in half.
 */
static void
progress_fit(char *out, size_t n, char (*f)[80], int width)
{
	static const struct { int field, shorten; } step[] = {
		{ PF_RATE, 0 }, { PF_FILES, 1 }, { PF_BYTES, 0 }, { PF_FILES, 0 },
		{ PF_ETA, 0 }, { PF_PCT, 1 }, { PF_PCT, 0 },
	};
	size_t s = 0, len;
	int i;
	char *p;

	for (;;) {
		out[0] = '\0';
		for (i = 0, len = 0; i < PF_N; i++) {
			if (f[i][0] == '\0')
				continue;
			len = strlen(out);
			snprintf(out + len, n - len, "%s%s", len ? "  " : "", f[i]);
		}
		if ((int)strlen(out) <= width || s >= sizeof step / sizeof step[0])
			break;
		i = step[s].field;
		if (step[s].shorten && i == PF_FILES && (p = strstr(f[i], " files")))
			*p = '\0';
		else if (step[s].shorten && i == PF_PCT && (p = strchr(f[i], '.')))
			strcpy(p, "%");
		else if (!step[s].shorten)
			f[i][0] = '\0';
		s++;
	}
	if ((int)strlen(out) > width)
		out[0] = '\0';  /* not even the percentage fits */
}

/*
 * Show the progress line: files done/total, percent (or "scanning" while
 * the totals are still counted), bytes, rate, ETA; see the comment at the
 * top of this section.  On a terminal at most every TICK_MS and as wide as
 * the terminal; to a file (--progress) one line with the elapsed time
 * about every second, every 30 s at most once the run is long.  Forced
 * lines ignore the interval.  Parent only.
 */
static void
progress_show(int force)
{
	static double brate;                    /* smoothed bytes/s */
	static uint64_t lastb, lastf;
	static int64_t lastt;
	uint64_t tf, tb, done = g.copied + g.failed + g.skipped, bdone;
	int final, width = 80, n, pad;
	int64_t t = now_ms(), every;
	double pct, dt, wdone, wtotal, eta = -1;
	char line[256], f[PF_N][80], b1[32], b2[32], b3[32];
	struct winsize ws;

	if (!g.progress)
		return;
	if (t - g.m_tlast >= TICK_MS)
		model_tick(t);
	progress_totals(&tf, &tb, &final);
	if (final && g.counted < 0 && g.progress == 2 && done < tf) {
		/* a "scanning" line was shown: say that the count is complete */
		fprintf(stderr, "pcopy: [%s] counted: %llu files, %s\n",
		    fmt_secs(b1, sizeof b1, (t - g.t0) / 1000.0),
		    (unsigned long long)tf, fmt_bytes(b2, sizeof b2, tb));
		force = 1;
	}
	if (final)
		g.counted = 1;
	every = g.progress == 1 ? TICK_MS : (t - g.t0) / 20;
	if (every < 1000 && g.progress == 2)
		every = 1000;
	if (every > LOG_MAX_MS)
		every = LOG_MAX_MS;
	if (!force && t - g.tlast < every)
		return;
	g.tlast = t;
	bdone = progress_bytes();
	if (bdone > tb)
		tb = bdone;
	if (done > tf)
		tf = done;
	/* the model: work in seconds of worker time */
	wdone = done * g.cf + bdone / 1e6 * g.cb;
	wtotal = tf * g.cf + tb / 1e6 * g.cb;
	dt = (t - lastt) / 1000.0;
	if (t - g.t0 < 3000 && t > g.t0) {
		/* the mean so far: steadier than any sample at first */
		brate = bdone * 1000.0 / (t - g.t0);
		g.wrate = wdone * 1000.0 / (t - g.t0);
	} else if (lastt && dt > 0.05) {
		double a = dt / (3.0 + dt);     /* then ~3 s smoothing */

		brate += a * ((bdone - lastb) / dt - brate);
		/* both ends at today's costs: a new cf or cb is no progress */
		g.wrate += a * (((done - lastf) * g.cf + (bdone - lastb) / 1e6 * g.cb) / dt - g.wrate);
	}
	if (lastt == 0 || dt > 0.05) {
		lastt = t;
		lastb = bdone;
		lastf = done;
	}
	pct = wtotal > 0 ? 100.0 * wdone / wtotal : 100;
	if (final) {
		if (pct < g.pct_shown)
			pct = g.pct_shown;      /* never backwards */
		if (pct > 100)
			pct = 100;
		g.pct_shown = pct;
	}
	if (g.m_seen > 0 && g.wrate > 0)
		eta = wtotal > wdone ? (wtotal - wdone) / g.wrate : 0;
	snprintf(f[PF_FILES], sizeof f[0], "%llu/%llu%s files", (unsigned long long)done,
	    (unsigned long long)tf, final ? "" : "+");
	if (final)
		snprintf(f[PF_PCT], sizeof f[0], "%.2f%%", pct);
	else
		snprintf(f[PF_PCT], sizeof f[0], "scanning");
	snprintf(f[PF_BYTES], sizeof f[0], "%s/%s%s", fmt_bytes(b1, sizeof b1, bdone),
	    fmt_bytes(b2, sizeof b2, tb), final ? "" : "+");
	snprintf(f[PF_RATE], sizeof f[0], "%s/s", fmt_bytes(b3, sizeof b3, brate));
	if (!final && eta < 1)
		f[PF_ETA][0] = '\0';   /* a lower bound of nothing says nothing */
	else if (eta < 0)
		snprintf(f[PF_ETA], sizeof f[0], "ETA ?");
	else
		snprintf(f[PF_ETA], sizeof f[0], "ETA %s%s", final ? "" : ">",
		    fmt_secs(b1, sizeof b1, eta));
	if (!final)
		g.counted = -1;
	if (g.progress == 1) {
		if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
			width = ws.ws_col;
		width--;                /* the last column would wrap on some terminals */
		if (width > (int)sizeof line - 1)
			width = sizeof line - 1;
		progress_fit(line, sizeof line, f, width);
		/* pad over the last line: no escape codes, dumb terminals too */
		n = strlen(line);
		pad = (g.line_shown < width ? g.line_shown : width) - n;
		fprintf(stderr, "\r%s%*s", line, pad > 0 ? pad : 0, "");
		g.line_shown = n > 0 ? n : 1;
	} else {
		progress_fit(line, sizeof line, f, sizeof line - 1);
		fprintf(stderr, "pcopy: [%s] %s\n", fmt_secs(b1, sizeof b1, (t - g.t0) / 1000.0), line);
	}
	fflush(stderr);
}

/* Remove the progress line so a message can be printed. */
static void
progress_clear(void)
{
	if (g.line_shown) {
		fprintf(stderr, "\r%*s\r", g.line_shown, "");
		g.line_shown = 0;
	}
}

/* The last line: counts, bytes, seconds, rate. */
static void
summary(const char *how)
{
	double secs = (now_ms() - g.t0) / 1000.0;
	char b1[32], b2[32];

	progress_clear();
	if (g.quiet)
		return;
	fprintf(stderr, "pcopy: %s%llu files, %llu dirs, %s", how,
	    (unsigned long long)g.copied, (unsigned long long)g.ndirs,
	    fmt_bytes(b1, sizeof b1, g.bytes_done));
	if (!g.dryrun)
		fprintf(stderr, " in %.2f s (%s/s)%s", secs,
		    fmt_bytes(b2, sizeof b2, secs > 0 ? g.bytes_done / secs : 0),
		    g.fsync ? ", synced" : "");
	if (g.dst_shown)
		fprintf(stderr, " into '%s'", g.dst);
	if (g.skipped)
		fprintf(stderr, ", %llu skipped", (unsigned long long)g.skipped);
	if (g.failed)
		fprintf(stderr, ", %llu failed", (unsigned long long)g.failed);
	if (g.deleted)
		fprintf(stderr, ", %llu deleted", (unsigned long long)g.deleted);
	if (g.dropped)
		fprintf(stderr, ", %llu not copied", (unsigned long long)g.dropped);
	fputc('\n', stderr);
}

/* -- main loop (parent side) -- */

/*
 * The -v and -n lists are output: if writing them failed (a full disk, a
 * closed pipe), say so; the run fails, as cp -v's does.  Returns 0 or -1.
 */
static int
stdout_check(void)
{
	int e = fflush(stdout) == EOF ? errno : g.outerr ? g.outerr : EIO;

	if (!ferror(stdout))
		return 0;
	progress_clear();
	fprintf(stderr, "pcopy: write error on standard output: %s\n", strerror(e));
	return -1;
}

static void
on_signal(int sig)
{
	int e = errno;

	if (sig == SIGUSR1)
		got_usr1 = 1;
	else if (sig == SIGWINCH)
		got_winch = 1;
	else if (got_sig == 0)
		got_sig = sig;
	else
		got_sig = -sig;         /* second signal: hurry */
	if (write(g.sigpipe[1], "", 1) < 0) {
		/* the pipe is full: poll wakes anyway */
	}
	errno = e;
}

/*
 * Catch sig unless it was ignored when we started: a background job of a
 * non-interactive shell, or nohup, means to ignore ^C or the hang-up.
 */
static void
catch_signal(int sig, struct sigaction *sa)
{
	struct sigaction old;

	if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
		return;
	sigaction(sig, sa, NULL);
}

/* SIGUSR1: one line per worker: pid, state, file, seconds on it. */
static void
status_dump(void)
{
	int64_t t = now_ms();
	unsigned i;

	progress_clear();
	for (i = 0; i < g.jobs; i++) {
		struct worker *k = &g.wk[i];
		struct wstat *s = &g.slot[i];

		if (k->nfly == 0 || s->job != k->fly[0]->id || s->idx >= k->fly[0]->nent) {
			fprintf(stderr, "pcopy: worker %u pid %ld: idle\n", i + 1, (long)k->pid);
			continue;
		}
		{
			struct ent *e = job_ent(k->fly[0], s->idx);
			char *p = src_path(k->fly[0]->dir, ent_name(e));

			fprintf(stderr, "pcopy: worker %u pid %ld: copying '%s' (%.1f s, %llu bytes)\n",
			    i + 1, (long)k->pid, p, (t - s->since) / 1000.0,
			    (unsigned long long)s->bytes);
			free(p);
		}
	}
}

/*
 * May the walk go on?  Not while the queue is full, nor while it holds
 * its share of descriptors and cannot park ancestors to free some --
 * unless nothing is in flight to release any, when waiting would never
 * end.
 */
static int
walk_may(void)
{
	if (!g.walking || g.stop || got_sig || g.nqueued >= QMAX)
		return 0;
	if (g.fdopen >= g.fdlimit)
		dir_park_some();
	return g.fdopen < g.fdlimit || (g.qhead == NULL && in_flight() == 0);
}

/*
 * The parent's loop: walk while the queue has room, dispatch, wait in
 * poll() for results, signals or the next progress tick.  Returns when
 * everything is done or a signal asked to stop.
 */
static void
run(void)
{
	struct pollfd pf[257];
	unsigned i, n, map[257];
	int timeout, busy;
	char sink[64];

	while (!got_sig) {
		for (i = 0; i < 64 && walk_may(); i++)
			if (!walk_step()) {
				g.walking = 0;
				break;
			}
		busy = walk_may();
		if (!g.walking)
			census_stop();
		dispatch();
		if (g.stop)
			walk_abandon();
		if (!g.walking && g.qhead == NULL && in_flight() == 0)
			break;
		n = 0;
		pf[n].fd = g.sigpipe[0];
		pf[n++].events = POLLIN;
		for (i = 0; i < g.jobs; i++) {
			if (g.wk[i].fd < 0)
				continue;
			map[n] = i;
			pf[n].fd = g.wk[i].fd;
			pf[n++].events = POLLIN;
		}
		timeout = busy ? 0 : g.progress ? TICK_MS : -1;
		if (poll(pf, n, timeout) < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		if (pf[0].revents && read(g.sigpipe[0], sink, sizeof sink) < 0) {
			/* nothing to do: the flags say what happened */
		}
		if (got_usr1) {
			got_usr1 = 0;
			status_dump();
		}
		for (i = 1; i < n; i++)
			if (pf[i].revents)
				wk_input(map[i]);
		progress_show(got_winch);
		got_winch = 0;
	}
}

/*
 * End of the run: no more jobs, so shut every channel's job side; workers
 * see end of file and exit.  On a signal, tell them to stop now.  Reap
 * every one.
 */
static void
shutdown_workers(void)
{
	unsigned i;
	int sig = got_sig;

	census_stop();
	if (sig)
		wk_signal(sig < 0 ? SIGKILL : SIGTERM);
	for (i = 0; i < g.jobs; i++) {
		if (g.wk[i].fd < 0)
			continue;
		shutdown(g.wk[i].fd, SHUT_WR);
		for (;;) {
			struct pollfd pf = { g.wk[i].fd, POLLIN, 0 };
			uint64_t buf[512];
			int fds[MSG_FDS];
			ssize_t n;

			if (got_sig < 0 && sig >= 0) {  /* a second signal: now */
				sig = got_sig;
				wk_signal(SIGKILL);
			}
			if (poll(&pf, 1, 1000) <= 0)
				continue;
			n = msg_recv(g.wk[i].fd, buf, sizeof buf, fds);
			if (n == 0 || (n < 0 && errno != EINTR))
				break;  /* results after a signal are not counted */
		}
		wk_reap(i);
	}
}

/* -- options -- */

static void
usage(FILE *f)
{
	fputs(
"usage: pcopy [OPTION]... SOURCE [DEST]\n"
"  or:  pcopy [OPTION]... -t DIR SOURCE...\n"
"Copy the directory tree SOURCE to DEST with a pool of worker processes,\n"
"preserving what cp -a preserves.  DEST/P is the copy of SOURCE/P (like\n"
"cp -aT SOURCE DEST).  DEST defaults to NAME-copy next to SOURCE (NAME is\n"
"the directory's real name, also for '.'); the summary then says where the\n"
"copy went.  An existing DEST directory is merged into.  SOURCE may be a\n"
"single file: an existing directory DEST (or DEST/) then receives DEST/FILE.\n"
"\n"
"  -j, --jobs N          worker processes (1-256; default: 4 per usable CPU, at\n"
"                        most 64; usable: online, in the affinity mask and\n"
"                        within the cgroup's CPU quota: v2 cpu.max, v1\n"
"                        cpu.cfs_quota_us)\n"
"  -t, --target-directory DIR  copy each SOURCE to DIR/NAME, like cp -t (a\n"
"                        SOURCE that cannot be set up fails alone: exit 1)\n"
"  -q, --quiet           no progress line and no summary (errors are still printed)\n"
"  -v, --verbose         print each copied entry (path below SOURCE) on stdout,\n"
"                        and 'delete PATH' for each entry --delete removes\n"
"      --progress        show progress even when stderr is not a terminal\n"
"                        (then as plain lines with the elapsed time, about\n"
"                        once a second, every 30 s at most in long runs)\n"
"  -u, --update          skip regular files whose copy has the same size and\n"
"                        mtime (to the ns, or as precise as DEST keeps times),\n"
"                        and symlinks, FIFOs, sockets and devices already\n"
"                        identical; they are not touched at all\n"
"  -c, --checksum        -u, but compare the bytes of files -u would skip, and\n"
"                        copy them again if they differ\n"
"      --delete          remove DEST entries that SOURCE lacks (not in a\n"
"                        directory SOURCE could not read fully, nor after EIO\n"
"                        or ENOSPC; excluded names stay; symlinks never followed)\n"
"      --delete-excluded  --delete, and remove excluded DEST entries too\n"
"      --verify          read back each file and compare with the source\n"
"                        before giving it its name\n"
"      --fsync           sync each file before its rename, each directory at the end\n"
"  -n, --dry-run         list what would be created, replaced, skipped or\n"
"                        deleted; change nothing\n"
"      --exclude GLOB    skip entries GLOB matches, as rsync's patterns: no '/',\n"
"                        the name; a '/' inside, the path's last components at\n"
"                        any depth; a leading '/', the path from SOURCE's top;\n"
"                        '*' '?' never match '/', '**' does; 'GLOB/':\n"
"                        directories only (repeatable)\n"
"      --include GLOB    copy what GLOB matches: the first matching --include or\n"
"                        --exclude decides, in the order given\n"
"      --exclude-from FILE, --include-from FILE  patterns from FILE, one a line\n"
"                        ('#' or ';' starts a comment line; '+ '/'- ' prefixes)\n"
"  -x, --one-file-system  do not descend into other file systems (mount points\n"
"                        are copied as empty directories); DEST may then be\n"
"                        another file system mounted inside SOURCE\n"
"                        (pcopy -x / /mnt/new)\n"
"      --files-from FILE  copy only the paths listed in FILE ('-': stdin), one\n"
"                        per line, relative to SOURCE; directories whole\n"
"  -0, --null            --files-from entries are NUL-separated\n"
"      --shard K/N       copy only shard K of N of the files (stable hash of the\n"
"                        inode number); N runs into one DEST, then one\n"
"                        'pcopy -u', equal one run\n"
"      --shard env[/N]   K (and N) from the job engine: JOB_COMPLETION_INDEX+1\n"
"                        (Kubernetes Indexed Job; give N), or Slurm's\n"
"                        SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1 of\n"
"                        SLURM_ARRAY_TASK_COUNT\n"
"  -a, -r                accepted and ignored: pcopy always copies everything\n"
"  -h, --help            show this help and exit\n"
"  -V, --version         show the version and exit\n"
"\n"
"Exit status: 0 all copied; 1 some entries failed (each named on stderr);\n"
"2 usage or setup error (nothing copied); 128+N stopped by signal N.\n"
"Files appear in DEST only when complete (written unnamed or under a hidden\n"
"name " TMP_PREFIX "*, then linked or renamed into place).  SIGUSR1 prints what\n"
"each worker is copying.  Safe as root on trees others can write: no symlink\n"
"is followed (nor a DEST that is one), and an entry swapped for another while\n"
"it is copied is named (\"changed during copy\") and not copied.\n", f);
}

/* Parse -j's argument: a whole number 1..256, or exit 2. */
static unsigned
parse_jobs(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v < 1 || v > 256)
		die("invalid number of jobs '%s' (1-256)", s);
	return (unsigned)v;
}

/* The value of environment variable name as a whole number >= 0, or -1 if unset. */
static long
env_num(const char *name)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL)
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	if (*v == '\0' || *end || errno || n < 0)
		die("--shard env: %s='%s' is not a whole number", name, v);
	return n;
}

/*
 * --shard env[/N]: the shard number from the environment a job engine
 * sets, so that no shell is needed to compute it.  Kubernetes Indexed
 * Job: K = JOB_COMPLETION_INDEX + 1 (N must be given).  Slurm job array:
 * K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / step + 1, N defaults
 * to SLURM_ARRAY_TASK_COUNT.  Sets *k and *n (n 0 if not found), or exits 2.
 */
static void
shard_env(unsigned long *k, unsigned long *n)
{
	long id, min, step, cnt;

	if ((id = env_num("JOB_COMPLETION_INDEX")) >= 0) {
		*k = (unsigned long)id + 1;
		return;
	}
	if ((id = env_num("SLURM_ARRAY_TASK_ID")) < 0)
		die("--shard env: neither JOB_COMPLETION_INDEX (Kubernetes) nor"
		    " SLURM_ARRAY_TASK_ID (Slurm) is set");
	min = env_num("SLURM_ARRAY_TASK_MIN");
	step = env_num("SLURM_ARRAY_TASK_STEP");
	cnt = env_num("SLURM_ARRAY_TASK_COUNT");
	if (min < 0)
		min = 0;
	if (step < 1)
		step = 1;
	if (id < min || (id - min) % step)
		die("--shard env: SLURM_ARRAY_TASK_ID=%ld is not in the array"
		    " %ld, %ld, ... (use a plain range, --array=0-N)", id, min, min + step);
	*k = (unsigned long)((id - min) / step) + 1;
	if (*n == 0 && cnt > 0)
		*n = (unsigned long)cnt;
}

/*
 * --shard K/N (1 <= K <= N <= 65536) or --shard env[/N] (see shard_env),
 * or exit 2.
 */
static void
parse_shard(const char *s)
{
	char *end;
	unsigned long k = 0, n = 0;

	errno = 0;
	if (strncmp(s, "env", 3) == 0 && (s[3] == '\0' || s[3] == '/')) {
		end = (char *)s + 3;
		if (*end == '/' && isdigit((unsigned char)end[1]))
			n = strtoul(end + 1, &end, 10);
		if (*end || errno || (s[3] == '/' && n == 0) || n > 65536)
			die("invalid --shard '%s' (want env or env/N)", s);
		shard_env(&k, &n);
		if (n == 0)
			die("--shard env: SLURM_ARRAY_TASK_COUNT is not set: give N (--shard env/N)");
		if (k > n)
			die("--shard %s: shard %lu of %lu from the environment is out of range",
			    s, k, n);
	} else {
		k = strtoul(s, &end, 10);
		if (end == s || *end != '/' || !isdigit((unsigned char)end[1]))
			die("invalid --shard '%s' (want K/N or env/N)", s);
		n = strtoul(end + 1, &end, 10);
		if (*end || errno || n < 1 || n > 65536 || k < 1 || k > n)
			die("invalid --shard '%s' (want K/N with 1 <= K <= N)", s);
	}
	g.shard_k = k;
	g.shard_n = n;
}

/*
 * Add one --exclude (incl 0) or --include (incl 1) pattern.  A "- " or
 * "+ " prefix makes it an exclude or an include whatever the option, as
 * in rsync.  A trailing '/' limits it to directories.  What it is matched
 * against is rsync's choice (RM_*): a leading '/' anchors it at SOURCE,
 * else a '/' inside matches that many trailing components of the path at
 * any depth, "**" anywhere in the path, and no '/' the name.  Empty:
 * exit 2.
 */
static void
rule_add(const char *arg, int incl, const char *from)
{
	struct rule *r;
	size_t n;
	char *pat;
	const char *q;

	if ((arg[0] == '+' || arg[0] == '-') && arg[1] == ' ') {
		incl = arg[0] == '+';
		arg += 2;
	}
	pat = strdup(arg[0] == '/' ? arg + 1 : arg);
	if (pat == NULL)
		die("out of memory");
	n = strlen(pat);
	g.rules = xrealloc(g.rules, (g.nrules + 1) * sizeof *g.rules);
	r = &g.rules[g.nrules++];
	r->dironly = n > 0 && pat[n - 1] == '/';
	while (n > 0 && pat[n - 1] == '/')
		pat[--n] = '\0';
	if (n == 0)
		die("%s: empty pattern '%s'", from ? from : incl ? "--include" : "--exclude", arg);
	r->pat = pat;
	r->incl = incl;
	r->wild = strpbrk(pat, "*?[") != NULL;
	r->nslash = 0;
	for (q = pat; (q = strchr(q, '/')) != NULL; q++)
		r->nslash++;
	if (!r->wild || strstr(pat, "**") == NULL)
		r->how = arg[0] == '/' ? RM_PATH : r->nslash ? RM_TAIL : RM_NAME;
	else
		r->how = arg[0] == '/' || strncmp(pat, "**", 2) == 0 ? RM_PATH : RM_ANY;
	r->slash1 = arg[0] != '/' && strncmp(pat, "**", 2) == 0;
	r->dirall = n >= 4 && strcmp(pat + n - 4, "/***") == 0;
}

/*
 * --exclude-from, --include-from: one pattern a line; blank lines and
 * lines starting with '#' or ';' are ignored.  '-' reads stdin.
 */
static void
rules_read(const char *file, int incl)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	char *line = NULL, from[64];
	size_t cap = 0;
	ssize_t n;

	if (f == NULL)
		die("--%s-from '%s': %s", incl ? "include" : "exclude", file, strerror(errno));
	snprintf(from, sizeof from, "--%s-from '%.40s'", incl ? "include" : "exclude", file);
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n == 0 || line[0] == '#' || line[0] == ';')
			continue;
		rule_add(line, incl, from);
	}
	if (ferror(f))
		die("--%s-from '%s': %s", incl ? "include" : "exclude", file, strerror(errno));
	free(line);
	if (f != stdin)
		fclose(f);
}

/* No operands and a terminal: ask, like the program pcopy replaces. */
static char *
ask_source(void)
{
	static char line[4096];
	size_t n;

	fputs("Folder to copy: ", stderr);
	if (fgets(line, sizeof line, stdin) == NULL)
		die("no SOURCE given");
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n == 0)
		die("no SOURCE given");
	return line;
}

/*
 * The name SOURCE's copy gets inside a directory: its last component, or,
 * for "." and "..", the real name of the directory they stand for.  NULL
 * for "/", which has no name.  Parent, at setup; malloc'd.
 */
static char *
src_name(const char *src)
{
	size_t n = strlen(src), b;
	char *real, *name;

	while (n > 1 && src[n - 1] == '/')
		n--;
	for (b = n; b > 0 && src[b - 1] != '/'; b--)
		;
	if (!(n - b == 1 && src[b] == '.') && !(n - b == 2 && src[b] == '.' && src[b + 1] == '.')) {
		if (n == 1 && src[0] == '/')
			return NULL;
		name = xmalloc(n - b + 1);
		memcpy(name, src + b, n - b);
		name[n - b] = '\0';
		return name;
	}
	real = realpath(src, NULL);
	if (real == NULL)
		die("'%s': %s", src, strerror(errno));
	name = strcmp(real, "/") ? strdup(strrchr(real, '/') + 1) : NULL;
	free(real);
	return name;
}

/*
 * DEST when none is given: "NAME-copy" next to SOURCE.  SOURCE "." or
 * ".." becomes the real path of that directory plus "-copy" (not ".-copy"
 * inside it); "/" has no sensible default and is refused.
 */
static char *
default_dest(const char *src)
{
	size_t n = strlen(src);
	char *d, *name = src_name(src), *real;

	if (name == NULL)
		die("'%s' has no name to make a default DEST from: give DEST"
		    " (try 'pcopy -x / /mnt/new')", src);
	while (n > 1 && src[n - 1] == '/')
		n--;
	if (n >= strlen(name) && strncmp(src + n - strlen(name), name, strlen(name)) == 0) {
		d = xmalloc(n + 6);
		memcpy(d, src, n);
		strcpy(d + n, "-copy");
	} else {        /* "." or "..": the real path */
		real = realpath(src, NULL);
		if (real == NULL)
			die("'%s': %s", src, strerror(errno));
		d = path_join(real, NULL, NULL);
		d = xrealloc(d, strlen(d) + 6);
		strcat(d, "-copy");
		free(real);
	}
	free(name);
	return d;
}

/*
 * Where SOURCE (lstat in st) is copied to: with -t, DIR/NAME; a
 * non-directory SOURCE with a DEST that is an existing directory (or ends
 * in '/') goes to DEST/NAME, as with cp; else DEST as given.  Sets
 * g.dst_shown when pcopy chose the name.  Parent, at setup.
 */
static const char *
dest_for(const char *src, const struct stat *st, const char *dst)
{
	struct stat ds;
	char *name;
	const char *into = NULL;

	if (g.target)
		into = g.target;
	else if (!S_ISDIR(st->st_mode) && dst[strlen(dst) - 1] == '/') {
		if (stat(dst, &ds) < 0 || !S_ISDIR(ds.st_mode))
			die("'%s': not a directory", dst);
		into = dst;
	} else if (!S_ISDIR(st->st_mode) && stat(dst, &ds) == 0 && S_ISDIR(ds.st_mode))
		into = dst;
	if (into == NULL)
		return dst;
	name = src_name(src);
	if (name == NULL)
		die("'%s' has no name to copy into '%s' under: give DEST instead of -t", src, into);
	g.dst_shown = 1;
	dst = path_join(into, name, NULL);
	free(name);
	return dst;
}

/*
 * Say which option getopt_long refused, as the user typed it, and exit 2.
 * av is argv as given (getopt_long permutes argv while it works).
 */
static void
bad_option(int c, int ac, char **av, const struct option *lo)
{
	const char *arg;
	int i, k, n, exact;

	for (i = 0; lo[i].name && lo[i].val != optopt; i++)
		;
	if (c == ':') {         /* a missing argument: the option came last */
		if (optopt < 256 && strncmp(av[ac - 1], "--", 2) != 0)
			die("option '-%c' needs an argument (try 'pcopy --help')", optopt);
		die("option '--%s' needs an argument (try 'pcopy --help')", lo[i].name);
	}
	if (optopt && lo[i].name)
		die("option '--%s' takes no argument (try 'pcopy --help')", lo[i].name);
	if (optopt)
		die("unknown option '-%c' (try 'pcopy --help')", optopt);
	/* an unknown long option, or an abbreviation of several */
	for (k = 1; k < ac && strcmp(av[k], "--") != 0; k++) {
		arg = av[k];
		if (strncmp(arg, "--", 2) != 0)
			continue;
		c = (int)strcspn(arg + 2, "=");
		for (i = n = exact = 0; lo[i].name; i++) {
			n += strncmp(lo[i].name, arg + 2, c) == 0;
			exact |= strncmp(lo[i].name, arg + 2, c) == 0 && lo[i].name[c] == '\0';
		}
		if (exact || n == 1)
			continue;
		if (n == 0)
			die("unknown option '%.*s' (try 'pcopy --help')", c + 2, arg);
		fprintf(stderr, "pcopy: ambiguous option '%.*s' could be", c + 2, arg);
		for (i = 0; lo[i].name; i++)
			if (strncmp(lo[i].name, arg + 2, c) == 0)
				fprintf(stderr, " --%s", lo[i].name);
		fputs(" (try 'pcopy --help')\n", stderr);
		exit(2);
	}
	die("unknown option (try 'pcopy --help')");
}

/*
 * Options and operands into g.  SOURCE... go to g.srcs; g.dst is DEST as
 * given (or the default), and each source's real DEST is decided by
 * dest_for once it has been stat'ed.  Parent; exits 2 on any error.
 */
static void
parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "update", no_argument, NULL, 'u' },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "fsync", no_argument, NULL, OPT_FSYNC },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "exclude", required_argument, NULL, OPT_EXCLUDE },
		{ "exclude-from", required_argument, NULL, OPT_EXCLUDE_FROM },
		{ "include", required_argument, NULL, OPT_INCLUDE },
		{ "include-from", required_argument, NULL, OPT_INCLUDE_FROM },
		{ "delete", no_argument, NULL, OPT_DELETE },
		{ "delete-excluded", no_argument, NULL, OPT_DELETE_EXCLUDED },
		{ "checksum", no_argument, NULL, 'c' },
		{ "archive", no_argument, NULL, 'a' },
		{ "recursive", no_argument, NULL, 'r' },
		{ "one-file-system", no_argument, NULL, 'x' },
		{ "files-from", required_argument, NULL, OPT_FILES_FROM },
		{ "null", no_argument, NULL, '0' },
		{ "shard", required_argument, NULL, OPT_SHARD },
		{ "target-directory", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, force = 0;
	const char *list = NULL;
	struct stat st;
	char **av = xmalloc((argc + 1) * sizeof *av);

	memcpy(av, argv, (argc + 1) * sizeof *av);      /* before permutation */
	g.jobs = 0;     /* default decided in main (jobs_default) */
	opterr = 0;
	g.listsep = '\n';
	while ((c = getopt_long(argc, argv, ":j:qvhVunx0t:car", lo, NULL)) != -1) {
		switch (c) {
		case 'j': g.jobs = parse_jobs(optarg); break;
		case 'q': g.quiet = 1; break;
		case 'v': g.verbose = 1; break;
		case OPT_PROGRESS: force = 1; break;
		case 'u': g.update = 1; break;
		case OPT_VERIFY: g.verify = 1; break;
		case OPT_FSYNC: g.fsync = 1; break;
		case 'n': g.dryrun = 1; break;
		case 'x': g.onefs = 1; break;
		case '0': g.listsep = '\0'; break;
		case 't':
			if (optarg[0] == '\0')
				die("-t: DIR is an empty string");
			g.target = optarg;
			break;
		case OPT_FILES_FROM: list = optarg; break;
		case OPT_SHARD: parse_shard(optarg); break;
		case OPT_EXCLUDE: rule_add(optarg, 0, NULL); break;
		case OPT_INCLUDE: rule_add(optarg, 1, NULL); break;
		case OPT_EXCLUDE_FROM: rules_read(optarg, 0); break;
		case OPT_INCLUDE_FROM: rules_read(optarg, 1); break;
		case OPT_DELETE: g.del = g.del ? g.del : 1; break;
		case OPT_DELETE_EXCLUDED: g.del = 2; break;
		case 'c': g.checksum = g.update = 1; break;
		case 'a': case 'r': break;      /* pcopy always copies whole trees, all of it */
		case 'h': usage(stdout); exit(0);
		case 'V': printf("pcopy %s\n", VERSION); exit(0);
		default: bad_option(c, argc, av, lo);
		}
	}
	argc -= optind;
	argv += optind;
	if (g.target) {
		if (argc == 0)
			die("-t '%s': missing SOURCE (try 'pcopy --help')", g.target);
		if (stat(g.target, &st) < 0)
			die("-t '%s': %s", g.target, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			die("-t '%s': not a directory", g.target);
	} else if (argc > 2)
		die("extra operand '%s': to copy several SOURCEs into a directory,"
		    " use -t DIR SOURCE... (try 'pcopy --help')", argv[2]);
	if (argc == 0 && !isatty(0))
		die("missing SOURCE (try 'pcopy --help')");
	if (argc == 0) {
		static char *asked[2];

		asked[0] = ask_source();
		g.srcs = asked;
		g.nsrc = 1;
	} else {
		g.srcs = argv;
		g.nsrc = g.target ? argc : 1;
	}
	for (c = 0; c < g.nsrc; c++)
		if (g.srcs[c][0] == '\0')
			die("SOURCE is an empty string");
	g.src = g.srcs[0];
	if (g.target)
		g.dst = g.target;
	else if (argc == 2)
		g.dst = argv[1];
	else {
		g.dst = default_dest(g.src);
		g.dst_shown = 1;
	}
	if (g.dst[0] == '\0')
		die("DEST is an empty string");
	if (!g.quiet && !g.dryrun && (force || isatty(2)))
		g.progress = isatty(2) ? 1 : 2;
	if (g.del && list)
		die("--delete cannot be used with --files-from");
	if (g.del && g.shard_n)
		die("--delete cannot be used with --shard: a shard would delete the others' files");
	if (g.progress == 1 && g.verbose && isatty(1)) {
		struct stat o, e;

		/* names and the line on one terminal: clear the line first */
		g.vclear = fstat(1, &o) == 0 && fstat(2, &e) == 0 && o.st_rdev == e.st_rdev;
	}
	if (list) {
		if (g.nsrc > 1)
			die("--files-from takes one SOURCE");
		g.list = strcmp(list, "-") == 0 ? stdin : fopen(list, "r");
		if (g.list == NULL)
			die("--files-from '%s': %s", list, strerror(errno));
	}
	free(av);
}

/* -- setup -- */

/*
 * Walk up from directory fd (closed here) by "..", to the root: 1 if the
 * directory (dev, ino) is fd or one of its ancestors, with *crossed set if
 * a directory on another file system than dev came first; 0 if not; -1
 * if a directory could not be read (errno).  Parent, at setup.
 */
static int
up_holds(int fd, dev_t dev, ino_t ino, int *crossed)
{
	struct stat st, up;
	int nfd, r = 0;

	*crossed = 0;
	for (;;) {
		if (fstat(fd, &st) < 0) {
			r = -1;
			break;
		}
		if (st.st_dev == dev && st.st_ino == ino) {
			r = 1;
			break;
		}
		*crossed |= st.st_dev != dev;
		nfd = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (nfd < 0 || fstat(nfd, &up) < 0) {
			close_keep(nfd);
			break;
		}
		close(fd);
		fd = nfd;
		if (up.st_dev == st.st_dev && up.st_ino == st.st_ino)
			break;          /* the root is its own parent */
	}
	close_keep(fd);
	return r;
}

/*
 * Refuse a DEST that is SOURCE or lies inside it: walk up from DEST's
 * nearest existing ancestor to the root comparing (dev, ino).  With -x, a
 * DEST reached through another file system is fine: the walk stops at
 * that mount point and never enters DEST (pcopy -x / /mnt/new).
 */
static void
check_nesting(const struct stat *src, const char *dst)
{
	char *copy = xstrdup(dst), *p;
	int fd, r, crossed;

	for (;;) {
		fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0)
			break;
		p = strrchr(copy, '/');
		if (p == NULL) {
			fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			break;
		}
		if (p == copy)
			p[1] = '\0';
		else
			*p = '\0';
	}
	free(copy);
	if (fd < 0 || (r = up_holds(fd, src->st_dev, src->st_ino, &crossed)) < 0)
		die("'%s': %s", dst, strerror(errno));
	if (r == 1 && !(g.onefs && crossed))
		die("cannot copy '%s' into itself, '%s'%s", g.src, dst, g.onefs ? "" :
		    " (if DEST is another file system mounted inside SOURCE, use -x)");
}

/*
 * --delete: refuse a DEST that holds SOURCE (pcopy --delete /d/src /d):
 * SOURCE's own name in DEST is not in SOURCE, and mirroring would delete
 * SOURCE itself.  Walks up from SOURCE, comparing each directory with
 * DEST.  Parent, at setup; exit 2.
 */
static void
check_delete_nesting(int sfd, int dfd)
{
	struct stat dst;
	int fd, r, crossed;

	if (fstat(dfd, &dst) < 0 || (fd = dup(sfd)) < 0)
		die("'%s': %s", g.dst, strerror(errno));
	if ((r = up_holds(fd, dst.st_dev, dst.st_ino, &crossed)) < 0)
		die("'%s': %s", g.src, strerror(errno));
	if (r == 1)
		die("--delete: SOURCE '%s' is inside DEST '%s'; it would be deleted",
		    g.src, g.dst);
}

/*
 * The owner that new files get in directory dfd: our euid, unless the
 * file system maps it (NFS root_squash, say).  Learnt from an unnamed
 * file where O_TMPFILE works.  What the parent and workers make must have
 * it, or another user put something else in its place.
 */
static uid_t
owner_probe(int dfd)
{
	struct stat st;
	uid_t uid = g.euid;
	int fd;

	fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0 && fstat(fd, &st) == 0)
		uid = st.st_uid;
	close_keep(fd);
	return uid;
}

/*
 * Decide how workers give names to new files, by trying it once in DEST:
 * O_TMPFILE + linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, the /proc
 * form needs /proc; else hidden names and rename.
 */
static int
tmp_probe(int dfd)
{
	char name[64], proc[64];
	int fd, mode = TMP_NAMED;

	fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return TMP_NAMED;
	snprintf(name, sizeof name, TMP_PREFIX "%ld.probe", (long)getpid());
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	if (linkat(fd, "", dfd, name, AT_EMPTY_PATH) == 0)
		mode = TMP_EMPTY;
	else if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) == 0)
		mode = TMP_PROC;
	if (mode != TMP_NAMED)
		unlinkat(dfd, name, 0);
	close(fd);
	return mode;
}

/*
 * -u: how much of a nanosecond mtime DEST's file system loses (ext4 with
 * 128-byte inodes keeps whole seconds, vfat two seconds): a probe file's
 * mtime is set to 3.999999999 s and read back.  Returns nanoseconds, 0
 * when it keeps them all (or cannot tell).  Parent, at setup.
 */
static int64_t
mtime_window(int dfd)
{
	struct timespec ts[2] = { { 3, 999999999 }, { 3, 999999999 } };
	char name[64] = "";
	struct stat st;
	int64_t lost = 0;
	int fd;

	fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(name, sizeof name, TMP_PREFIX "%ld.mtime", (long)getpid());
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return 0;
	}
	if (futimens(fd, ts) == 0 && fstat(fd, &st) == 0 && st.st_mtim.tv_sec <= 3)
		lost = (3 - (int64_t)st.st_mtim.tv_sec) * 1000000000 + 999999999 - st.st_mtim.tv_nsec;
	if (name[0])
		unlinkat(dfd, name, 0);
	close(fd);
	return lost;
}

/*
 * Raise the descriptor limit to the hard one and budget the walk's share
 * (g.fdlimit, counted in g.fdopen: every directory descriptor and DIR the
 * walk and census hold, the top's included): the limit less what is open
 * already (stdio, a --files-from file), the signal pipe, one channel per
 * worker and FD_SPARE.  With too few for two directories, fewer workers
 * are started.  A tree deeper than the budget is walked by parking
 * ancestors (dir_park).  Parent, before anything else is opened.
 */
static void
fd_budget(void)
{
	struct rlimit rl;
	struct dirent *de;
	int lim = 1024, used = 0;
	DIR *ds;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		lim = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1 << 20 ?
		    1 << 20 : (int)rl.rlim_cur;
	}
	if ((ds = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(ds)) != NULL)
			used += de->d_name[0] != '.';
		closedir(ds);
		used--;         /* ds's own */
	} else {
		used = 3;
	}
	for (;;) {
		g.fdlimit = lim - used - 2 - (int)g.jobs - FD_SPARE;
		if (g.fdlimit >= 6 || g.jobs <= 1)
			break;
		g.jobs--;
	}
	if (g.fdlimit < 3)
		die("only %d file descriptors: too few to copy (ulimit -n)", lim);
}

/* Signals: a self-pipe wakes poll(); see on_signal. */
static void
signals_setup(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	signal(SIGPIPE, SIG_IGN);
	if (pipe2(g.sigpipe, O_NONBLOCK | O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	catch_signal(SIGINT, &sa);
	catch_signal(SIGHUP, &sa);
	sigaction(SIGTERM, &sa, NULL);
	/* SIGUSR1 only asks for a status: blocking reads (the list on a
	 * pipe) go on.  The others stop the run, so their EINTR is wanted. */
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	if (g.progress == 1)
		sigaction(SIGWINCH, &sa, NULL); /* redraw at the new width */
}

/* The worker slots, their shared page, and the workers themselves. */
static void
wk_start(void)
{
	unsigned i;

	g.wk = xmalloc((g.jobs + 1) * sizeof *g.wk);
	memset(g.wk, 0, (g.jobs + 1) * sizeof *g.wk);  /* progress fields start at 0 */
	g.slot = mmap(NULL, (g.jobs + 1) * sizeof *g.slot, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g.slot == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (i = 0; i < g.jobs; i++)
		g.wk[i].fd = -1;
	for (i = 0; i < g.jobs; i++)
		if (wk_spawn(i) < 0)
			break;
	if (i == 0 && g.jobs > 0) {
		int e = errno;

		free(g.wk);     /* none runs: a setup error, exit 2 */
		g.wk = NULL;
		die("cannot start a worker: %s", strerror(e));
	}
	if (i < g.jobs) {       /* fork refused (RLIMIT_NPROC, pids cgroup) */
		fprintf(stderr, "pcopy: started %u of %u workers (%s); copying with %u\n",
		    i, g.jobs, strerror(errno), i);
		g.jobs = i;
	}
}

/* Does the comma-separated list hold word? */
static int
csv_has(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (;;) {
		if (strncmp(list, word, n) == 0 && (list[n] == ',' || list[n] == '\0'))
			return 1;
		if ((list = strchr(list, ',')) == NULL)
			return 0;
		list++;
	}
}

/* Undo mountinfo's octal escapes (a space is "\040") in place. */
static void
unoctal(char *s)
{
	char *o = s;

	for (; *s; s++)
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else
			*o++ = *s;
	*o = '\0';
}

/* Read up to two numbers from a file: how many were read. */
static int
read_nums(const char *path, long long *a, long long *b)
{
	FILE *f = fopen(path, "re");
	int k;

	if (f == NULL)
		return 0;
	k = fscanf(f, "%lld %lld", a, b);
	fclose(f);
	return k < 0 ? 0 : k;
}

/*
 * Lower n to the CPU quota of the cgroup directory mnt + rel and of each
 * of its ancestors up to mnt (a quota binds every cgroup below it): v2's
 * cpu.max ("QUOTA PERIOD" or "max PERIOD"), or v1's cpu.cfs_quota_us
 * (-1: none) and cpu.cfs_period_us.  rel ("/..." ) is cut in the process.
 */
static long
cg_quota(const char *mnt, char *rel, int v1, long n)
{
	char path[8400], *p;
	long long quota, period, x;

	for (;;) {
		const char *sep = rel[strlen(rel) - 1] == '/' ? "" : "/";

		quota = period = -1;
		if (v1) {
			snprintf(path, sizeof path, "%s%s%scpu.cfs_quota_us", mnt, rel, sep);
			if (read_nums(path, &quota, &x) >= 1) {
				snprintf(path, sizeof path, "%s%s%scpu.cfs_period_us", mnt, rel, sep);
				read_nums(path, &period, &x);
			}
		} else {
			snprintf(path, sizeof path, "%s%s%scpu.max", mnt, rel, sep);
			read_nums(path, &quota, &period);
		}
		if (quota > 0 && period > 0 && (quota + period - 1) / period < n)
			n = (long)((quota + period - 1) / period);
		if (strcmp(rel, "/") == 0)
			return n;
		p = strrchr(rel, '/');
		p[p == rel] = '\0';
	}
}

/*
 * The cgroup v1 hierarchy that has the cpu controller: its mount point
 * in mnt, and this process's cgroup below it in rel ("/" for the mount's
 * own root).  From /proc/self/cgroup ("4:cpu,cpuacct:/kube/pod") and the
 * "cgroup" line of /proc/self/mountinfo whose options name cpu; its root
 * field is the cgroup the mount shows (a container's, often), so it is
 * cut from the path.  Returns 0, or -1 (no /proc, no v1 cpu hierarchy).
 */
static int
cg1_cpu(char *mnt, size_t nm, char *rel, size_t nr)
{
	char buf[4096], cg[4096], root[4096], mp[4096], type[64], opts[1024];
	char *a, *b, *sep;
	int found = 0;
	size_t k;
	FILE *f;

	if ((f = fopen("/proc/self/cgroup", "re")) == NULL)
		return -1;
	while (!found && fgets(buf, sizeof buf, f)) {
		buf[strcspn(buf, "\n")] = '\0';
		if ((a = strchr(buf, ':')) == NULL || (b = strchr(a + 1, ':')) == NULL)
			continue;
		*b = '\0';
		if (csv_has(a + 1, "cpu") && b[1] == '/') {
			snprintf(cg, sizeof cg, "%s", b + 1);
			found = 1;
		}
	}
	fclose(f);
	if (!found || (f = fopen("/proc/self/mountinfo", "re")) == NULL)
		return -1;
	found = 0;
	while (!found && fgets(buf, sizeof buf, f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - TYPE SOURCE SUPEROPTS */
		if ((sep = strstr(buf, " - ")) == NULL ||
		    sscanf(buf, "%*s %*s %*s %4095s %4095s", root, mp) != 2 ||
		    sscanf(sep + 3, "%63s %*s %1023s", type, opts) != 2)
			continue;
		found = strcmp(type, "cgroup") == 0 && csv_has(opts, "cpu");
	}
	fclose(f);
	if (!found)
		return -1;
	unoctal(root);
	unoctal(mp);
	snprintf(mnt, nm, "%s", mp);
	k = strcmp(root, "/") == 0 ? 0 : strlen(root);
	if (strncmp(cg, root, k) == 0 && (cg[k] == '/' || cg[k] == '\0'))
		snprintf(rel, nr, "%s", cg[k] ? cg + k : "/");
	else
		snprintf(rel, nr, "/");         /* not below what is mounted */
	return 0;
}

/*
 * CPUs this process may use: the online ones, fewer if the affinity mask
 * (taskset, cpuset) or a cgroup CPU quota says so: v2's cpu.max, v1's
 * cpu.cfs_quota_us / cpu.cfs_period_us, of its cgroup and every ancestor
 * (as a container's limit is).  Parent, at setup.
 */
static unsigned
cpus_usable(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	char line[4096], mnt[4096];
	cpu_set_t set;
	FILE *f;

	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 &&
	    (n < 1 || CPU_COUNT(&set) < n))
		n = CPU_COUNT(&set);
	if (n < 1)
		n = 1;
	/* the v2 entry "0::/path"; without /proc (or cgroup v1), try the
	 * root, which is the container's own cgroup under a cgroup namespace */
	strcpy(line, "/");
	if ((f = fopen("/proc/self/cgroup", "re")) != NULL) {
		char buf[4096];

		while (fgets(buf, sizeof buf, f))
			if (strncmp(buf, "0::/", 4) == 0) {
				buf[strcspn(buf, "\n")] = '\0';
				snprintf(line, sizeof line, "%s", buf + 3);
			}
		fclose(f);
	}
	n = cg_quota("/sys/fs/cgroup", line, 0, n);
	/* v1: where /proc says; without it, the usual mount points' roots */
	if (cg1_cpu(mnt, sizeof mnt, line, sizeof line) == 0) {
		n = cg_quota(mnt, line, 1, n);
	} else {
		strcpy(line, "/");
		n = cg_quota("/sys/fs/cgroup/cpu,cpuacct", line, 1, n);
		strcpy(line, "/");
		n = cg_quota("/sys/fs/cgroup/cpu", line, 1, n);
	}
	return (unsigned)n;
}

/*
 * Default -j: 4 per usable CPU, at most 64.  On ext4 the workers wait on
 * inode-table reads, and -j8 beat -j2 by 1.6x on 2 CPUs; on tmpfs -j2 to
 * -j8 measured the same.
 */
static unsigned
jobs_default(void)
{
	unsigned n = cpus_usable();

	return n > 16 ? 64 : 4 * n;
}

/* Split path into a directory (malloc'd) and its last component. */
static char *
split_path(const char *path, const char **base)
{
	size_t n = strlen(path);
	char *dir;
	const char *slash;

	while (n > 1 && path[n - 1] == '/')
		n--;
	dir = xmalloc(n + 2);
	memcpy(dir, path, n);
	dir[n] = '\0';
	slash = strrchr(dir, '/');
	if (slash == NULL) {
		*base = path;
		strcpy(dir, ".");
		return dir;
	}
	*base = path + (slash - dir) + 1;
	if (slash == dir)
		dir[1] = '\0';
	else
		dir[slash - dir] = '\0';
	return dir;
}

/*
 * A SOURCE that cannot be set up (missing, unreadable, its DEST not
 * usable).  With one SOURCE that is a setup error, die(); with -t DIR
 * SOURCE... it fails that SOURCE alone, as cp's does: named, counted as
 * one failed entry (exit 1), and the other SOURCEs are still copied.
 * Parent, at setup; the caller undoes what it opened.
 */
static void
setup_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say_v(fmt, ap, "");
	va_end(ap);
	if (g.target == NULL)
		exit(2);        /* as die(): one SOURCE, set up before any worker */
	outcome(OUT_FAIL_SRC | OUT_NEW | OUT_NAMED, NULL, NULL, NULL);
}

/*
 * Make (unless -n) and open DEST, the top of the copy of a directory, in
 * d->dfd, never following it if it is a symlink (cp -aT refuses too: else
 * whoever can write its parent could send the whole copy elsewhere; a
 * trailing slash would follow).  Returns 1 if this run made it, 0 if it
 * was there (or, -n, is not), -1 after setup_fail.
 */
static int
dest_top(struct dir *d)
{
	struct stat lst;
	char *ddir = xstrdup(g.dst);
	size_t n;
	int made, ret = -1;

	for (n = strlen(ddir); n > 1 && ddir[n - 1] == '/'; n--)
		ddir[n - 1] = '\0';
	made = !g.dryrun && mkdir(ddir, 0700) == 0;
	if (!made && !g.dryrun && errno != EEXIST) {
		setup_fail("cannot create '%s': %s", g.dst, strerror(errno));
		goto out;
	}
	d->existed = !made && !g.dryrun;
	d->dfd = dst_openat(AT_FDCWD, ddir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d->dfd < 0 && (errno == ENOTDIR || errno == ELOOP) &&
	    lstat(ddir, &lst) == 0 && S_ISLNK(lst.st_mode))
		setup_fail("'%s': is a symbolic link; not followed (name the "
		    "directory it points to)", g.dst);
	else if (d->dfd < 0 && !(g.dryrun && errno == ENOENT))
		setup_fail("'%s': %s", g.dst, errno == ENOTDIR ?
		    "exists and is not a directory" : strerror(errno));
	else
		ret = made;
out:
	free(ddir);
	return ret;
}

/*
 * A directory SOURCE: open it (checked against its lstat, st) and DEST
 * (dest_top), learn how DEST treats new files, and open the listing the
 * walk reads.  Returns 0, or -1 after setup_fail.
 */
static int
setup_tree(struct dir *d, const struct stat *st)
{
	struct stat dst;
	int made, how = 0;

	d->sfd = src_openat(AT_FDCWD, g.src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->sfd < 0) {
		setup_fail("'%s': %s", g.src, strerror(errno));
		return -1;
	}
	if (fstat(d->sfd, &dst) < 0 || dst.st_dev != st->st_dev || dst.st_ino != st->st_ino) {
		setup_fail("'%s': changed while being opened", g.src);
		return -1;
	}
	if ((made = dest_top(d)) < 0)
		return -1;
	if (d->dfd < 0)
		printf("create %s/\n", g.dst);
	if (g.dryrun) {
		d->nometa = 1;
	} else {
		g.newuid = owner_probe(d->dfd);
		if (fstat(d->dfd, &dst) < 0 || (made && dst.st_uid != g.newuid)) {
			setup_fail("'%s': changed while being created (another "
			    "directory took its name)", g.dst);
			return -1;
		}
		d->jflags = dest_jflags(d->dfd, &dst, made);
		if (!made && g.euid != 0 && dst.st_uid != g.euid) {
			/* a volume prepared by someone else (a Kubernetes
			 * emptyDir, a shared scratch directory): only its owner
			 * can change it, and that is no reason to fail */
			warn_path(0, g.dst, "existed and belongs to uid %u: its owner,"
			    " mode and times stay as they are", (unsigned)dst.st_uid);
			d->nometa = 1;
		}
		if (!g.shard_n && !made)
			how |= DS_SWEEP;        /* --shard: see dest_scan */
	}
	if (g.del && d->dfd >= 0 && !g.list) {
		check_delete_nesting(d->sfd, d->dfd);
		how |= DS_LIST;
	}
	if (how)
		d->dn = dest_scan(d, d->dfd, how);
	if (!g.list)    /* --files-from: list_step reads the list */
		d->ds = rd_open();
	return 0;
}

/*
 * A file or symlink SOURCE: DEST names the copy.  Open the directories
 * that hold the two names.  Returns 0, or -1 after setup_fail.
 */
static int
setup_file(struct dir *d, const struct stat *st)
{
	struct stat dst;
	const char *sbase, *dbase;
	char *sdir, *ddir;
	int ret = -1;

	if (stat(g.dst, &dst) == 0 && dst.st_dev == st->st_dev && dst.st_ino == st->st_ino) {
		setup_fail("'%s' and '%s' are the same file", g.src, g.dst);
		return -1;
	}
	sdir = split_path(g.src, &sbase);
	ddir = split_path(g.dst, &dbase);
	d->nometa = 1;
	if ((d->sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		setup_fail("'%s': %s", sdir, strerror(errno));
	else if ((d->dfd = open(ddir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		setup_fail("'%s': %s", ddir, strerror(errno));
	else
		ret = 0;
	if (ret == 0 && fstat(d->dfd, &dst) == 0)
		d->jflags = dest_jflags(d->dfd, &dst, 0);
	if (ret == 0 && !g.dryrun)
		g.newuid = owner_probe(d->dfd);
	free(sdir);
	free(ddir);
	return ret;
}

/*
 * Open SOURCE and DEST and make the top struct dir: the tree's top for a
 * directory, or the two parent directories for a single file.  Returns
 * NULL if this SOURCE of -t cannot be set up (named by setup_fail).
 */
static struct dir *
setup_dirs(const struct stat *st)
{
	struct dir *d = xmalloc(sizeof *d);
	int r;

	memset(d, 0, sizeof *d);
	d->sfd = d->dfd = -1;
	d->st = *st;
	d->pending = 1;
	d->owner = -1;
	if (S_ISDIR(st->st_mode)) {
		d->rel = xstrdup("");
		r = setup_tree(d, st);
	} else if (g.list) {
		die("'%s': --files-from needs a directory SOURCE", g.src);
	} else {
		r = setup_file(d, st);  /* d->rel NULL: not a tree */
	}
	if (r == 0)
		return d;
	if (d->ds)
		rd_close(d->ds);
	close_keep(d->sfd);
	close_keep(d->dfd);
	free(d->rel);
	free(d);
	return NULL;
}

/*
 * Set up the top: open SOURCE and DEST (setup_dirs), decide how files get
 * their names, and for a single-file SOURCE queue its one entry.  Returns
 * NULL if this SOURCE of -t cannot be set up (named and counted).
 */
static struct dir *
setup_top(const struct stat *st)
{
	struct dir *d = setup_dirs(st);
	const char *sbase, *dbase;
	struct stat dst;
	char *dir;

	if (d == NULL)
		return NULL;
	g.root = d;
	g.fdopen = (d->sfd >= 0) + (d->dfd >= 0);
	g.dstfd = d->dfd;
	if (getenv("PCOPY_NO_XATTRAT"))
		xa_noat = 1;    /* for tests: the fallback of kernels before 6.13 */
	if (g.dryrun)
		;
	else if (getenv("PCOPY_NO_TMPFILE"))
		g.tmpmode = TMP_NAMED;  /* for tests: the fallback of old kernels */
	else
		g.tmpmode = tmp_probe(g.dstfd);
	if (g.update && !g.dryrun)
		g.mwindow = mtime_window(g.dstfd);
	if (S_ISDIR(st->st_mode))
		return d;
	/* one file or symlink: DEST names the copy */
	free(split_path(g.src, &sbase));
	dir = split_path(g.dst, &dbase);
	free(dir);
	if (strlen(dbase) > NAME_MAX || strlen(sbase) > NAME_MAX) {
		setup_fail("'%s': %s", strlen(dbase) > NAME_MAX ? g.dst : g.src,
		    strerror(ENAMETOOLONG));
		dir_put(d);     /* the top: nothing was made, so nothing is set */
		return NULL;
	}
	if (g.dryrun)
		printf("%s %s\n", lstat(g.dst, &dst) == 0 ? "replace" : "create", g.dst);
	else {
		g.found++;
		batch_add(d, sbase, strcmp(sbase, dbase) ? dbase : NULL, st, 0);
		batch_flush(d);
	}
	return d;
}

/*
 * Check every SOURCE before anything is created (exit 2 on the first bad
 * one): it exists and is a directory, file or symlink, its DEST is not
 * inside it, and no two of them (-t) would be copied to one name.  Their
 * lstat results go to sts, their DESTs to dsts.  With -t, a SOURCE that
 * is missing or of another type fails alone (setup_fail; its dsts[i] is
 * NULL) and the others are copied.  Parent.
 */
static void
sources_check(struct stat *sts, const char **dsts)
{
	int i, k;

	for (i = 0; i < g.nsrc; i++) {
		const char *src = g.srcs[i];

		dsts[i] = NULL;
		if (lstat(src, &sts[i]) < 0) {
			setup_fail("'%s': %s", src, strerror(errno));
			continue;
		}
		if (!S_ISDIR(sts[i].st_mode) && !S_ISREG(sts[i].st_mode) &&
		    !S_ISLNK(sts[i].st_mode)) {
			setup_fail("'%s': not a directory, regular file or symlink", src);
			continue;
		}
		dsts[i] = dest_for(src, &sts[i], g.dst);
		if (S_ISDIR(sts[i].st_mode)) {
			g.src = src;    /* for check_nesting's message */
			check_nesting(&sts[i], dsts[i]);
		}
		for (k = 0; k < i; k++)
			if (dsts[k] && strcmp(dsts[k], dsts[i]) == 0)
				die("'%s' and '%s' would both be copied to '%s'",
				    g.srcs[k], src, dsts[i]);
	}
}

/* -- main -- */

/*
 * Copy one SOURCE (lstat in st) to its DEST with the running workers: set
 * up the top, walk and dispatch until done.  The first SOURCE set up
 * starts the workers.  Returns 0 (also when this SOURCE of -t could not
 * be set up: named and counted), or -1 if a signal or a full DEST stopped
 * the run.
 */
static int
copy_one(const struct stat *st)
{
	struct dir *top;

	size_t i;

	for (i = 0; i < g.hlsize; i++)  /* links never join two SOURCEs' copies */
		free(g.hl[i].path);
	free(g.hl);
	g.hl = NULL;
	g.hlsize = g.hlused = 0;
	g.rootdev = st->st_dev;
	g.rootdone = 0;
	top = setup_top(st);
	if (top == NULL)
		return 0;
	g.walking = S_ISDIR(st->st_mode);
	g.cur = g.walking ? top : NULL;
	if (g.walking && g.progress && !g.list)
		census_start(top->sfd);
	if (!g.walking)
		dir_put(top);   /* single file: its job holds the reference */
	if (g.wk == NULL)
		wk_start();
	run();
	if (got_sig || g.stop)
		return -1;
	if (!g.rootdone)
		warn_path(1, g.dst, "internal error: a directory was never finished");
	return 0;
}

int
main(int argc, char **argv)
{
	static struct stat *sts;        /* static: reachable until exit */
	static const char **dsts;
	int i;

	parse_args(argc, argv);
	sts = xmalloc(g.nsrc * sizeof *sts);
	dsts = xmalloc(g.nsrc * sizeof *dsts);
	sources_check(sts, dsts);
	g.euid = geteuid();
	g.newuid = g.euid;
	g.egid = getegid();
	g.t0 = now_ms();
	umask(0);               /* modes are set exactly; dirs start 0700 */
	if (g.jobs == 0)
		g.jobs = jobs_default();
	fd_budget();
	signals_setup();
	if (g.dryrun)
		g.jobs = 0;     /* -n: the parent alone, nothing is written */

	for (i = 0; i < g.nsrc; i++) {
		g.src = g.srcs[i];
		g.dst = dsts[i];
		if (g.dst && copy_one(&sts[i]) < 0)
			break;
	}
	if (g.nsrc > 1)
		g.dst = g.target;       /* the summary names the directory */
	shutdown_workers();
	if (got_sig) {
		int sig = got_sig < 0 ? -got_sig : got_sig;

		summary("interrupted: ");
		/* die of the signal, as shells expect of an interrupted
		 * program (a script running pcopy then stops too) */
		fflush(NULL);
		signal(sig, SIG_DFL);
		raise(sig);
		return 128 + sig;
	}
	if (g.copied + g.failed + g.skipped + g.dropped != g.found) {
		warn_path(1, g.src, "internal error: %llu entries found, %llu accounted for",
		    (unsigned long long)g.found,
		    (unsigned long long)(g.copied + g.failed + g.skipped + g.dropped));
	}
	if (g.failed || g.dropped)
		g.status = 1;
	summary(g.dryrun ? "dry run: would copy " : "");
	if (stdout_check() < 0)
		g.status = 1;
	return g.status;
}
