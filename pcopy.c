/* pcopy.c -- copy a directory tree with a pool of worker processes
 * SPDX-License-Identifier: MIT
 *
 * Parallel operation works like this.
 *
 * Processes.  One parent and N workers (-j N).  The parent walks SOURCE,
 * creates every directory in DEST, keeps the job queue, owns the terminal
 * and is the only process that prints.  Workers copy the entries they are
 * sent and report back; they never print.  Workers are forked once, before
 * the walk; a worker that dies is reaped, reported and replaced.
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
 *             opened, as cp -a does.  Small files are
 *             batched (BATCH_FILES, BATCH_BYTES) so that round-trips do not
 *             dominate on trees of many small files.
 *   MSG_DONE  worker -> parent: the job is finished; `count` reports
 *             (struct rep) name the entries that failed, were skipped or
 *             deserve a warning; every other entry was copied.
 * At most QDEPTH jobs are in flight per worker, so neither side can fill
 * the other's socket buffer and block: no deadlock.  The dispatcher gives
 * a worker jobs from a directory it already works in, else from one no
 * other worker is in, so workers rarely contend for one directory.
 * Besides the channel, each worker has a slot in a shared memory page
 * (struct wstat) where it posts which entry of which job it is on and how
 * many bytes it has written; the parent reads it for the progress line,
 * for SIGUSR1, and to know which entry a dead worker was copying.
 *
 * The walk.  The parent reads directories with openat/fdopendir/fstatat
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
 * by path from the top, checked, when it needs them again.  The queue of jobs is bounded (QMAX); the
 * walk pauses while it is full, so memory does not grow with the tree.
 * With a progress line, while the queue is full the parent spends its
 * idle time in a census (census_step), a second read-only walk that counts
 * files and bytes so the line has a real total long before the main walk
 * ends.
 *
 * Filters.  --exclude, -x and --shard decide in the walk (and the census)
 * what is entered or queued; --files-from replaces reading the top
 * directory by reading the list, entering parent directories as needed;
 * -n prints what the walk finds instead of queueing it, and starts no
 * workers.  -u, --verify and --fsync act in the workers, per file, and
 * -u and --fsync in the parent too (hard links already in place are
 * skipped; directories are synced after their metadata).
 *
 * Hard links.  Entries with st_nlink > 1 go through a (dev, ino) table in
 * the parent.  The first name is copied; later names wait until that copy
 * is reported done and are then link()ed by the parent.  EMLINK: the name
 * is copied instead, with a warning.
 *
 * Files.  A worker opens the source (O_NOATIME where allowed: reading
 * writes nothing to SOURCE), creates the copy unnamed (O_TMPFILE) in its
 * destination directory, copies the data (copy_file_range, read/write
 * fallback, holes kept with SEEK_DATA/SEEK_HOLE), sets owner, mode, xattrs
 * and times in that order (chown clears set-uid bits; writing data clears
 * capabilities; times go last), and only then links it under its name; a
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
 * (exit 1), never copied with another file's metadata.  Directories the
 * parent makes, and nodes a worker makes (mknodat and symlinkat give no
 * descriptor), are opened right after, O_PATH | O_NOFOLLOW for nodes, and
 * checked to be new (owner: new files' owner in DEST, g.newuid; nodes: one
 * link, the type and device numbers made); their owner, mode and times
 * are then set through that descriptor (fchownat/fchmodat2/utimensat with
 * AT_EMPTY_PATH; /proc/self/fd on kernels before 6.6).  DEST itself is
 * never followed if it is a symlink.  Hidden files are created 0600; a
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
 * no worker is left and none can be forked, the copy stops.  ENOSPC or
 * EDQUOT (on data, mkdir or link) stops dispatching: one message, the
 * queue and the batches being filled are dropped, in-flight jobs finish.
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
 * flight (so every directory is complete), the parent shuts the job side
 * of every channel; workers read end of file and _exit(0); the parent
 * reads end of file on each result side and reaps each pid.  It then
 * checks that the top directory was finished and the ledger.  SIGINT, SIGTERM, SIGHUP
 * (workers ignore SIGINT and SIGHUP, so a ^C in a terminal reaches only the
 * parent's logic; the parent keeps SIGINT and SIGHUP ignored if it started
 * with them ignored): the parent stops the walk, sends SIGTERM to every
 * worker (each abandons its file, which being unnamed simply vanishes),
 * reaps them all, prints the summary and dies of the same signal (the
 * shell sees 128+signal).  A second
 * signal sends SIGKILL instead.  If the parent dies, workers get SIGTERM
 * (PR_SET_PDEATHSIG) or end of file and exit.
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
#include <fnmatch.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VERSION "0.1"

/* -- tunables -- */

#define QDEPTH 2                /* jobs in flight per worker: one working, one waiting */
#define QMAX 256                /* queued jobs before the walk pauses (bounds memory) */
#define BATCH_FILES 32          /* entries per job: amortises a round-trip over ~1 ms of work */
#define BATCH_BYTES (1 << 20)   /* bytes per job: a big file travels alone */
#define MSG_MAX (32 << 10)      /* largest message: far below the socket buffer (~200 KiB) */
#define MSG_FDS 2               /* descriptors a job carries: source and DEST directory */
#define COPY_CHUNK (8 << 20)    /* bytes per copy call: bounds how long ^C waits */
#define BUF_SIZE (128 << 10)    /* read/write fallback buffer */
#define AFFINITY_SCAN 64        /* queued jobs dispatch looks through for a good one */
#define MAX_DEATHS 3            /* a job that kills this many workers fails its entry */
#define FD_SPARE 8              /* descriptors the parent opens for a moment:
				   at most 3 at once (a hard link, a reopened
				   directory), twice over for safety */
#define TICK_MS 100             /* progress refresh: 10 times a second at most */
#define HL_MIN 64               /* initial hard link table size (power of two) */
#define TMP_PREFIX ".pcopy-tmp."  /* hidden names: TMP_PREFIX "<pid>.<n>" */
#define TMP_NAME_MAX 48         /* room for one, with its NUL */

/* -- types -- */

enum { MSG_JOB = 1, MSG_DONE };

struct msg {                    /* header of every message, both ways */
	uint32_t type;          /* MSG_JOB or MSG_DONE */
	uint32_t id;            /* job id, echoed in the result */
	uint32_t len;           /* bytes after the header */
	uint32_t count;         /* entries (job) or reports (result) */
	uint32_t flags;         /* JF_* (job) */
	uint64_t bytes;         /* data bytes written (result) */
};

enum { JF_SGID = 1 };           /* job: destination dir is set-gid: always chown */

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
};

struct rep {                    /* one report in a result */
	uint32_t idx;           /* entry index in the job */
	uint32_t what;          /* R_* */
	int32_t err;            /* errno, if any */
	uint32_t pad;
	uint64_t val;           /* R_CHANGED: bytes actually copied */
};

enum {
	R_FAIL_SRC = 1,         /* reading the source failed: name the source */
	R_FAIL_DST,             /* writing DEST failed: name the destination */
	R_VANISHED,             /* source gone before it could be copied */
	R_CHANGED,              /* copied, but the size changed while copying */
	R_SKIP,                 /* -u: destination already up to date */
	R_NOXATTR,              /* copied, but DEST refused xattrs */
	R_BADCOPY,              /* --verify: the copy differs from the source */
	R_RACED,                /* another file took the name (val 1: in DEST): not copied */
};

struct dir {                    /* a directory being copied (parent only) */
	struct dir *up;         /* parent directory, NULL for the top */
	int sfd, dfd;           /* source and destination descriptors */
	DIR *ds;                /* open while the walk reads it */
	char *rel;              /* path below SOURCE, "" for the top */
	struct stat st;         /* source stat: metadata applied at the end */
	unsigned pending;       /* walk + jobs + subdirs + link waiters */
	struct job *batch;      /* job being filled from this directory */
	uint32_t jflags;        /* JF_* for jobs in this directory */
	int owner;              /* worker with jobs of it in flight, -1: none */
	unsigned busy;          /* jobs of it in flight */
	int nometa;             /* single-file mode: DEST's parent, leave alone */
	struct dir *lnext, *lprev;      /* --files-from: list of unfinished dirs */
	int parked;             /* sfd, dfd (and ds) closed to save descriptors */
	char **rest;            /* parked while read: the names still to walk */
	size_t nrest, irest;
	uint64_t ddev, dino;    /* DEST's identity, to check it when reopened */
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
};

struct cframe {                 /* a directory the census is reading (parent only) */
	struct cframe *up;
	DIR *ds;
	char *rel;              /* path below SOURCE */
};

enum { TMP_EMPTY = 1, TMP_PROC, TMP_NAMED };    /* how files get their name */

static struct {
	/* options */
	unsigned jobs;          /* -j */
	int quiet, verbose;     /* -q, -v */
	int progress;           /* 1: terminal line, 2: plain lines, 0: none */
	int update;             /* -u: skip files already up to date */
	int verify;             /* --verify: compare before naming */
	int fsync;              /* --fsync: sync files and directories */
	int dryrun;             /* -n: change nothing, say what would happen */
	int onefs;              /* -x: stay on SOURCE's file system */
	char **excl;            /* --exclude patterns */
	unsigned nexcl;
	unsigned shard_k, shard_n;      /* --shard K/N, 0/0: all */
	FILE *list;             /* --files-from stream, NULL: walk the tree */
	int listsep;            /* '\n', or '\0' with -0 */
	dev_t topdev;           /* SOURCE's device, for -x */
	/* set up by main, read by all */
	const char *src, *dst;  /* as given (for messages) */
	int tmpmode;            /* TMP_*: how workers name new files */
	uid_t euid;
	gid_t egid;
	uid_t newuid;           /* owner that new files get in DEST (tmp_probe) */
	/* parent only */
	struct worker *wk;      /* -j slots */
	struct wstat *ws;       /* shared page: one slot per worker */
	struct job *qhead, *qtail;
	unsigned nqueued;
	uint32_t nextid;
	struct dir *top;        /* directory the walk is reading */
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
	int noxattr_warned;
	int outerr;             /* errno of a failed flush of stdout, 0 if none */
	unsigned barren;        /* workers died since a job was last finished */
	/* the ledger */
	uint64_t found, copied, failed, skipped, dropped;
	uint64_t ndirs, bytes_found, bytes_done, bytes_skipped;
	int status;             /* exit status so far */
	int topdone;            /* the top directory was finished */
	/* progress */
	int64_t t0;             /* ms at start */
	int64_t tlast;          /* ms of the last progress line */
	double pct_shown;       /* the percent never goes backwards */
	int line_shown;         /* length of the progress line on screen, 0: none */
	struct cframe *cen;     /* census: directory being read, NULL when over */
	uint64_t cen_files, cen_bytes;  /* census totals so far */
	int cen_done;           /* the census read the whole tree */
} g;

static volatile sig_atomic_t got_sig;   /* parent: first signal; worker: SIGTERM */
static volatile sig_atomic_t got_usr1;
static int in_worker;                   /* this process is a worker */

/* -- utilities -- */

static void progress_clear(void);
static void summary(const char *how);
static void wk_signal(int sig);
static void shutdown_workers(void);
static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void warn_path(int fail, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Fatal setup error: message, exit 2.  Parent only, before any worker is
 * started, so nothing has been copied; after that, fatal().
 */
static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("pcopy: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
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

	progress_clear();
	fputs("pcopy: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("; stopping\n", stderr);
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
 * openat() for something of SOURCE that will be read (files, directories),
 * with O_NOATIME where the kernel allows it (the owner, or root): reading
 * then writes nothing to the source and its access times stay.  Parent and
 * workers.
 */
static int
src_openat(int dirfd, const char *name, int flags)
{
	static int noatime = O_NOATIME;
	int fd;

	fd = openat(dirfd, name, flags | noatime);
	if (fd < 0 && errno == EPERM && noatime) {
		fd = openat(dirfd, name, flags);
		if (fd >= 0 && g.euid != 0)
			noatime = 0;    /* files of others: stop asking */
	}
	return fd;
}

/* -- messages -- */

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
 * A descriptor opened for entry e: is it still the inode the walk saw
 * (type, device, inode)?  If so, *m is e's record with the owner, mode and
 * times of fstat -- what the copy gets, as cp -a takes them from the file
 * it reads -- and 0 is returned.  If not: R_RACED in *r (or R_FAIL_SRC
 * when fstat fails), -1.  Workers.  (m's names are not copied: use e's.)
 */
static int
ent_check(int fd, const struct ent *e, struct ent *m, struct rep *r)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		r->what = R_FAIL_SRC;
		r->err = errno;
		return -1;
	}
	if ((st.st_mode & S_IFMT) != (e->mode & S_IFMT) || st.st_dev != e->dev ||
	    st.st_ino != e->ino) {
		r->what = R_RACED;
		r->err = 0;
		return -1;
	}
	*m = *e;
	m->mode = st.st_mode;
	m->uid = st.st_uid;
	m->gid = st.st_gid;
	m->atime = st.st_atim.tv_sec;
	m->atime_ns = st.st_atim.tv_nsec;
	m->mtime = st.st_mtim.tv_sec;
	m->mtime_ns = st.st_mtim.tv_nsec;
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

/* -- copy engine (worker side) -- */

static struct {                 /* worker-only state */
	int sock;               /* channel to the parent */
	struct wstat *ws;       /* this worker's shared slot */
	char *buf;              /* read/write fallback buffer */
	char tmpname[TMP_NAME_MAX];     /* hidden name being written, "" if none */
	int tmpdir;             /* ... and the directory it is in */
	int noxattr_dst;        /* DEST refused xattrs: stop trying */
} w;

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
copy_advance(off_t *pos, ssize_t n)
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
			want = len - total;
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
	int64_t total = 0;
	ssize_t n;

	while (!no_cfr && (len < 0 || total < len)) {
		size_t want = COPY_CHUNK;
		off_t a = pos ? *pos : 0, b = a;

		if (len >= 0 && (int64_t)want > len - total)
			want = len - total;
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
	n = copy_rw(in, out, pos, len < 0 ? -1 : len - total, werr);
	return n < 0 ? -1 : total + n;
}

/*
 * Copy a sparse file: only the data extents, at their offsets; the
 * destination is sized to the full length so holes stay holes.
 */
static int64_t
copy_sparse(int in, int out, uint64_t size, int *werr)
{
	off_t data = 0, hole, end = (off_t)size;
	int64_t total = 0, n;

	for (;;) {
		data = lseek(in, data, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			return -1;
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -1;
		if (lseek(in, data, SEEK_SET) < 0 || lseek(out, data, SEEK_SET) < 0)
			return -1;
		n = copy_range(in, out, NULL, hole - data, 0, werr);
		if (n < 0)
			return -1;
		total += n;
		if (hole > end)
			end = hole;
		data = hole;
	}
	if (ftruncate(out, end) < 0) {
		*werr = 1;
		return -1;
	}
	return total;
}

/*
 * Copy the extended attributes of sfd to dfd (files and directories).
 * Runs in workers and, for directories, in the parent.  Returns 0, or -1
 * with errno when DEST refuses them; attributes the caller may not read or
 * set (trusted.* as non-root) are passed over, as cp -a does.
 */
static int
xattr_copy(int sfd, int dfd)
{
	char stack[1024], *list = stack, *name, *val = NULL;
	ssize_t n, vn;
	size_t vcap = 0;
	int ret = 0;

	n = flistxattr(sfd, list, sizeof stack);
	if (n < 0 && errno == ERANGE) {
		n = flistxattr(sfd, NULL, 0);
		if (n > 0) {
			list = xmalloc(n);
			n = flistxattr(sfd, list, n);
		}
	}
	if (n <= 0)
		goto out;       /* none, or the source file system has none */
	for (name = list; name < list + n; name += strlen(name) + 1) {
		vn = fgetxattr(sfd, name, NULL, 0);
		if (vn < 0)
			continue;
		if ((size_t)vn + 1 > vcap) {
			vcap = vn + 1;
			val = xrealloc(val, vcap);
		}
		vn = fgetxattr(sfd, name, val, vcap);
		if (vn < 0)
			continue;
		if (fsetxattr(dfd, name, val, vn, 0) < 0) {
			if (errno == ENOTSUP) {
				ret = -1;
				break;
			}
			/* EPERM for trusted.* / security.* as non-root: pass */
		}
	}
out:
	if (list != stack)
		free(list);
	free(val);
	if (ret < 0)
		errno = ENOTSUP;
	return ret;
}

/* Flags for an *at call on (dirfd, name): name "" is dirfd itself (O_PATH). */
static int
at_flags(const char *name)
{
	return name[0] ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH;
}

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452       /* Linux 6.6; the same number on every architecture */
#endif

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
 * Give a new inode the owner and mode of the source entry, in that order:
 * chown clears set-uid/set-gid, so the mode goes after it.  fd is the open
 * file, or -1 with (dirfd, name) for symlinks and special files, where
 * name "" means the O_PATH descriptor dirfd itself (never a path).  As
 * non-root, ownership is kept where the kernel allows it and set-uid/gid
 * bits are dropped where it does not, like cp -a.  Returns 0 or -1.
 */
static int
meta_owner_mode(int fd, int dirfd, const char *name, const struct ent *e,
    int always_chown, int created_mode)
{
	mode_t mode = e->mode & 07777;
	int r = 0;

	if (always_chown || e->uid != g.euid || e->gid != g.egid) {
		if (fd >= 0)
			r = fchown(fd, e->uid, e->gid);
		else
			r = fchownat(dirfd, name, e->uid, e->gid, at_flags(name));
		if (r < 0 && errno == EPERM && g.euid != 0) {
			/* try to keep at least the group, like cp -a */
			if (fd >= 0)
				r = fchown(fd, (uid_t)-1, e->gid);
			else
				r = fchownat(dirfd, name, (uid_t)-1, e->gid, at_flags(name));
			mode &= r < 0 ? ~(mode_t)(S_ISUID | S_ISGID) : ~(mode_t)S_ISUID;
			r = 0;
		}
		if (r < 0)
			return -1;
	}
	if (S_ISLNK(e->mode) || mode == (mode_t)created_mode)
		return 0;
	return fd >= 0 ? fchmod(fd, mode) : chmod_at(dirfd, name, mode);
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
 * Open a source file for reading: never following a symlink, never
 * blocking on a FIFO swapped in since the walk.  On failure fill *r
 * (R_VANISHED if it is gone) and return -1.
 */
static int
src_open(int sfd, const char *name, struct rep *r)
{
	int fd = src_openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		r->what = errno == ENOENT ? R_VANISHED : R_FAIL_SRC;
		r->err = errno;
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
 * Copy one regular file.  Returns 0 on success; otherwise fills *r with
 * what failed.  A file that changed size while being read is still copied
 * as read, and reported (R_CHANGED); one that is no longer the file the
 * walk saw is not copied (R_RACED).  Owner, mode and times come from fstat
 * of the descriptor read.  A hidden name (TMP_NAMED) is created 0600 and
 * gets its mode after its owner: no one else can open it meanwhile.
 */
static int
copy_reg(int sfd, int dfd, const struct ent *e, int always_chown, struct rep *r)
{
	const char *sname = ent_name(e), *dname = ent_dname(e);
	int in, out, werr = 0, note = 0;
	int64_t n;
	mode_t cmode;
	struct stat ds;
	struct ent me;

	if (g.update && fstatat(dfd, dname, &ds, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(ds.st_mode) && (uint64_t)ds.st_size == e->size &&
	    ds.st_mtim.tv_sec == e->mtime && (uint64_t)ds.st_mtim.tv_nsec == e->mtime_ns) {
		r->what = R_SKIP;
		return 1;
	}
	if ((in = src_open(sfd, sname, r)) < 0)
		return -1;
	if (ent_check(in, e, &me, r) < 0) {
		close(in);
		return -1;
	}
	e = &me;                /* from here on, names are sname and dname */
	cmode = g.tmpmode == TMP_NAMED ? 0600 : e->mode & 0777;
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
		n = copy_sparse(in, out, e->size, &werr);
	else
		n = copy_range(in, out, NULL, -1, e->size, &werr);
	if (n < 0) {
		r->what = werr ? R_FAIL_DST : R_FAIL_SRC;
		goto fail;
	}
	if ((uint64_t)n != e->size && e->size != 0 && e->blocks * 512 >= e->size) {
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
	if (meta_owner_mode(out, -1, NULL, e, always_chown, cmode) < 0)
		goto fail;
	if (!w.noxattr_dst && xattr_copy(in, out) < 0) {
		w.noxattr_dst = 1;
		note = note ? note : R_NOXATTR;
	}
	if (meta_times(out, -1, NULL, e) < 0 || (g.fsync && fsync(out) < 0) ||
	    tmp_commit(out, dfd, dname) < 0)
		goto fail;
	close(in);
	if (close(out) < 0) {
		r->err = errno;
		return -1;
	}
	r->what = note;
	return note ? 1 : 0;
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
	mode_t perm = e->mode & 0777;
	struct stat st;
	int r, fd;

	hide[0] = '\0';
	for (;;) {
		if (S_ISLNK(e->mode))
			r = symlinkat(target, dfd, at);
		else
			r = mknodat(dfd, at, (e->mode & S_IFMT) | perm, e->rdev);
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
	return fd;
}

/*
 * Copy a symlink, FIFO, socket or device node: never opened for reading,
 * never followed.  The source is opened as a path and checked to be the
 * entry the walk saw; its target is read, and its metadata taken, from
 * that descriptor.  The copy gets owner, mode and times through its own
 * O_PATH descriptor (make_node), so no by-name call can reach a file a
 * user swapped in.
 */
static int
copy_node(int sfd, int dfd, const struct ent *e, int always_chown, struct rep *r)
{
	char target[PATH_MAX + 1], hide[TMP_NAME_MAX];
	const char *dname = ent_dname(e);
	struct ent me;
	ssize_t n = 0;
	int in, out;

	in = openat(sfd, ent_name(e), O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		r->what = errno == ENOENT ? R_VANISHED : R_FAIL_SRC;
		r->err = errno;
		return -1;
	}
	if (ent_check(in, e, &me, r) < 0) {
		close(in);
		return -1;
	}
	if (S_ISLNK(me.mode)) {
		n = readlinkat(in, "", target, sizeof target - 1);
		if (n < 0) {
			r->what = R_FAIL_SRC;
			r->err = errno;
			close(in);
			return -1;
		}
	}
	target[n] = '\0';
	close(in);
	r->what = R_FAIL_DST;
	out = make_node(dfd, dname, &me, target, hide);
	if (out == -2) {
		r->what = R_RACED;
		r->val = 1;
		return -1;
	}
	if (out < 0)
		goto fail;
	if (meta_owner_mode(-1, out, "", &me, always_chown, me.mode & 0777) < 0 ||
	    meta_times(-1, out, "", &me) < 0) {
		if (hide[0])
			unlinkat(dfd, hide, 0);
		goto fail;
	}
	close(out);
	out = -1;
	if (hide[0] && tmp_rename(dfd, hide, dname) < 0)
		goto fail;      /* tmp_rename removed the hidden name */
	r->what = 0;
	return 0;
fail:
	r->err = errno;
	close_keep(out);
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
	int always_chown = (m->flags & JF_SGID) != 0;

	memset(&res.h, 0, sizeof res.h);
	w.ws->bytes = 0;
	w.ws->job = m->id;
	for (i = 0; i < m->count && !got_sig; i++) {
		struct ent *e = (struct ent *)p;
		struct rep *r = &res.r[nrep];
		int rc;

		p += ent_size(e);
		ws_post(i, w.ws->bytes);
		if (e->flags & ENT_DROP)
			continue;
		memset(r, 0, sizeof *r);
		if (S_ISREG(e->mode))
			rc = copy_reg(sfd, dfd, e, always_chown, r);
		else
			rc = copy_node(sfd, dfd, e, always_chown, r);
		if (rc != 0 && nrep < BATCH_FILES + 1) {
			r->idx = i;
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
	int fds[MSG_FDS];
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
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(1);
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
		wk_main(3, &g.ws[i]);
	}
	close(sv[1]);
	g.wk[i].pid = pid;
	g.wk[i].fd = sv[0];
	g.wk[i].nfly = 0;
	g.wk[i].broken = 0;
	memset(&g.ws[i], 0, sizeof g.ws[i]);
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

/* -- tree walk (parent side) -- */

static void dir_put(struct dir *d);
static int dir_unpark(struct dir *d);
static void job_queue(struct job *j, int front);
static void job_drop(struct job *j);
static void dest_full(int err);

/* Source and destination paths of an entry, for messages (malloc'd). */
static char *
src_path(const struct dir *d, const char *name)
{
	return path_join(g.src, d ? d->rel : NULL, name);
}

static char *
dst_path(const struct dir *d, const char *name)
{
	return path_join(g.dst, d ? d->rel : NULL, name);
}

static void
warn_entry(int fail, int dst, const struct dir *d, const char *name, int err)
{
	char *p = dst ? dst_path(d, name) : src_path(d, name);

	warn_path(fail, p, "%s", strerror(err));
	free(p);
}

/*
 * Record what became of one entry: the one place the ledger is kept.
 * Every entry the walk counts as found ends here exactly once, as copied,
 * skipped, failed or dropped, so that at the end found = copied + skipped
 * + failed + dropped.  OUT_NEW: the entry is decided as it is found (it
 * is counted found here too).  A failure is printed with `why` (NULL:
 * strerror(errno)), naming the source path (OUT_FAIL_SRC) or the
 * destination path (OUT_FAIL_DST), or with d NULL the name as given; with -v a copied entry is printed on
 * stdout.  Parent only.
 */
static void
outcome(int out, const struct dir *d, const char *name, const char *why)
{
	char *p;

	if (out & OUT_NEW)
		g.found++;
	switch (out & ~OUT_NEW) {
	case OUT_COPIED:
		g.copied++;
		if (g.verbose && !g.dryrun) {
			p = path_join(d ? d->rel : NULL, name, NULL);
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
		if (why == NULL)
			why = strerror(errno);
		if (d == NULL)          /* not below SOURCE: as given */
			p = xstrdup(name);
		else if ((out & ~OUT_NEW) == OUT_FAIL_DST)
			p = dst_path(d, name);
		else
			p = src_path(d, name);
		warn_path(1, p, "%s", why);
		free(p);
		g.failed++;
		break;
	}
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
	ent_fill(&e, &d->st);
	if (g.shard_n)          /* other shards may still write here: -u fixes */
		e.mode |= S_IRWXU;
	if (!d->nometa && !g.stop && !g.dryrun) {
		if (meta_owner_mode(d->dfd, -1, NULL, &e, d->jflags & JF_SGID, -1) < 0)
			warn_entry(1, 1, d, NULL, errno);
		if (d->sfd >= 0 && xattr_copy(d->sfd, d->dfd) < 0 && !g.noxattr_warned++)
			warn_path(0, g.dst, "extended attributes not supported; not copied");
		if (meta_times(d->dfd, -1, NULL, &e) < 0)
			warn_entry(1, 1, d, NULL, errno);
		if (g.fsync && fsync(d->dfd) < 0)
			warn_entry(1, 1, d, NULL, errno);
	}
	if (d->sfd >= 0) {
		close(d->sfd);
		g.fdopen--;
	}
	if (d->dfd >= 0) {
		close(d->dfd);
		g.fdopen--;
	}
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
		g.topdone = 1;
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
 * Descriptors run short (a tree deeper than the budget allows): close
 * those of directory d, an ancestor of where the walk is, keeping what is
 * left of its listing in memory (d->rest) so that the walk can come back
 * to it.  dir_unpark reopens them when they are needed.  Parent.
 */
static void
dir_park(struct dir *d)
{
	struct dirent *de;
	const char *n;

	if (d->ds) {
		errno = 0;
		while ((de = readdir(d->ds)) != NULL) {
			n = de->d_name;
			if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
				continue;
			if ((d->nrest & (d->nrest - 1)) == 0 || d->nrest == 0)
				d->rest = xrealloc(d->rest, (d->nrest ? 2 * d->nrest : 1) * sizeof *d->rest);
			if ((d->rest[d->nrest++] = strdup(n)) == NULL)
				die("out of memory");
			errno = 0;
		}
		if (errno)
			warn_entry(1, 0, d, NULL, errno);
		closedir(d->ds);
		d->ds = NULL;
		if (d->rest == NULL)
			d->rest = xmalloc(sizeof *d->rest);     /* read, and empty */
		g.fdopen--;
	}
	if (d->sfd >= 0) {
		close(d->sfd);
		g.fdopen--;
	}
	if (d->dfd >= 0) {
		close(d->dfd);
		g.fdopen--;
	}
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
		for (d = g.top ? g.top->up : NULL; d && d != g.root; d = d->up)
			if (!d->parked && d->busy == 0)
				best = d;       /* the one nearest the top */
		if (best == NULL)
			break;
		dir_park(best);
		freed = 1;
	}
	return freed;
}

/* Drop one pending reference; the last one finishes the directory. */
static void
dir_put(struct dir *d)
{
	if (--d->pending == 0)
		dir_finish(d);
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
 * Remove hidden temporaries left in an existing DEST directory by a pcopy
 * (or worker) that was killed.  A regular one that a live pcopy holds is
 * locked and stays; other types stay while the pid in their name lives.
 */
static void
tmp_sweep(int dfd)
{
	struct dirent *de;
	struct stat st;
	DIR *ds;
	int fd;

	/* a new open file description: a dup() would share (and leave at
	 * the end) the offset of dfd's, and a second sweep would read nothing */
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (ds = fdopendir(fd)) == NULL) {
		close_keep(fd);
		return;
	}
	while ((de = readdir(ds)) != NULL) {
		if (strncmp(de->d_name, TMP_PREFIX, sizeof TMP_PREFIX - 1) != 0 ||
		    fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISREG(st.st_mode)) {
			if (!S_ISDIR(st.st_mode) && tmp_orphan(de->d_name))
				unlinkat(dfd, de->d_name, 0);
			continue;
		}
		fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* only regular files carry the lock; the others are left */
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0)
			unlinkat(dfd, de->d_name, 0);
		close(fd);
	}
	closedir(ds);
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
	int sfd, dfd = -1, made = 0, dsfd;
	uint32_t jflags = 0;

	if (!g.dryrun) {
		made = mkdirat(up->dfd, name, 0700) == 0;
		if (!made && (errno == ENOSPC || errno == EDQUOT)) {
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
		dfd = openat(up->dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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
		/* files made in it get its group when it is set-gid (or on a
		 * grpid mount): then no chown can be skipped as "already right" */
		if (dfd >= 0 && !g.dryrun && ((dst.st_mode & S_ISGID) || dst.st_gid != g.egid))
			jflags |= JF_SGID;
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
	else if (g.verbose && !g.dryrun)
		printf("%s\n", d->rel);
	if (!made && dfd >= 0 && !g.dryrun) {
		/* ours but read-only (finished already, when a --files-from
		 * list comes back to it): open it up until dir_finish */
		if (g.euid != 0 && dst.st_uid == g.euid && (dst.st_mode & S_IRWXU) != S_IRWXU)
			fchmod(dfd, (dst.st_mode & 07777) | S_IRWXU);
		tmp_sweep(dfd);
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
	if (sfd < 0 || (read && ((dsfd = dup(sfd)) < 0 || (d->ds = fdopendir(dsfd)) == NULL))) {
		/* unreadable: it stays an empty directory with its metadata */
		outcome(OUT_FAIL_SRC | OUT_NEW, up, name, NULL);
		close_keep(sfd);
		dir_put(d);
		return NULL;
	}
	d->sfd = sfd;
	g.fdopen += d->ds ? 2 : 1;      /* fdopendir's dup counts too */
	return d;
}

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
		g.bytes_found += st->st_size;   /* bytes to copy, for progress */
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
	else if (errno == ENOSPC || errno == EDQUOT) {
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
 * Filters shared by the walk and the census: --exclude on the name (or
 * the path below SOURCE when the pattern has a '/'), and --shard on
 * non-directories: a stable hash of the path, or of the inode number for
 * hard-linked files so a whole group falls in one shard.
 */
static int
wanted(const char *rel, const char *name, const struct stat *st)
{
	char *path = NULL;
	unsigned i;
	int out = 0;
	uint64_t h;

	for (i = 0; i < g.nexcl && !out; i++) {
		const char *pat = g.excl[i];

		if (strchr(pat, '/') == NULL) {
			out = fnmatch(pat, name, FNM_PERIOD) == 0;
			continue;
		}
		if (path == NULL)
			path = path_join(rel, name, NULL);
		out = fnmatch(pat + (pat[0] == '/'), path, FNM_PATHNAME | FNM_PERIOD) == 0;
	}
	free(path);
	if (out || g.shard_n == 0 || S_ISDIR(st->st_mode))
		return !out;
	if (st->st_nlink > 1) {
		uint64_t ino = st->st_ino;

		h = fnv1a(&ino, sizeof ino, 0xcbf29ce484222325ULL);
	} else {
		h = fnv1a(rel, strlen(rel), 0xcbf29ce484222325ULL);
		h = fnv1a("/", 1, h);
		h = fnv1a(name, strlen(name), h);
	}
	return h % g.shard_n == g.shard_k - 1;
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
			what = "skip";
	}
	printf("%s %s\n", what, p);
	free(p);
	if (what[0] == 's') {
		outcome(OUT_SKIPPED, d, name, NULL);
	} else {
		outcome(OUT_COPIED, d, name, NULL);
		g.bytes_done += S_ISREG(st->st_mode) ? st->st_size : 0;
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

	if (!wanted(d->rel, name, st))
		return;
	if (S_ISDIR(st->st_mode)) {
		int read = !g.onefs || st->st_dev == g.topdev;

		sub = dir_enter(d, name, st, read);
		if (sub && read)
			g.top = sub;
		else if (sub)
			dir_put(sub);   /* -x: a mount point stays an empty directory */
		return;
	}
	g.found++;              /* decided once, in outcome() */
	if (g.dryrun)
		dry_entry(d, name, st);
	else if (st->st_nlink <= 1 || hl_entry(d, name, st))
		batch_add(d, name, NULL, st, st->st_nlink > 1 ? ENT_HLFIRST : 0);
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
	struct dir *d = g.top;

	batch_flush(d);
	if (d->ds) {
		closedir(d->ds);
		d->ds = NULL;
		g.fdopen--;
	}
	g.top = d->up;  /* depth first: the parent is still being read */
	dir_put(d);
	if (g.top)
		dir_unpark(g.top);
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
		k = strlen(g.top->rel);
		if (k == 0 || (strncmp(g.top->rel, par, k) == 0 && (par[k] == '/' || par[k] == '\0')))
			break;
		walk_pop();
	}
	while (strcmp(g.top->rel, par) != 0) {
		k = strlen(g.top->rel);
		comp = xstrdup(par + k + (k > 0));
		if (strchr(comp, '/'))
			*strchr(comp, '/') = '\0';
		d = dir_live(g.top, comp);
		if (d) {
			d->pending++;   /* the walk's reference, as dir_enter's */
			free(comp);
			g.top = d;
			if (dir_unpark(d) < 0)
				return -1;
			continue;
		}
		if (walk_stat(g.top, comp, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				d = dir_enter(g.top, comp, &st, 0);
			else {
				errno = ENOTDIR;
				outcome(OUT_FAIL_SRC | OUT_NEW, g.top, comp, NULL);
			}
		}
		free(comp);
		if (d == NULL)
			return -1;
		g.top = d;
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
		while (g.top)
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
	if (list_enter(par) == 0 && walk_stat(g.top, last, &st) == 0)
		walk_entry(g.top, last, &st);
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
	struct dir *d = g.top;
	struct dirent *de;
	struct stat st;
	const char *name;

	if (d == NULL)
		return 0;
	if (d->rest) {          /* parked while read: the rest of its listing */
		if (d->irest == d->nrest) {
			walk_pop();
			return g.top != NULL;
		}
		name = d->rest[d->irest++];
		if (walk_stat(d, name, &st) == 0)
			walk_entry(d, name, &st);
		free((char *)name);
		return 1;
	}
	if (d->ds == NULL)
		return list_step();
	errno = 0;
	de = readdir(d->ds);
	if (de == NULL) {
		if (errno)
			warn_entry(1, 0, d, NULL, errno);
		walk_pop();
		return g.top != NULL;
	}
	name = de->d_name;
	if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
		return 1;
	if (walk_stat(d, name, &st) == 0)
		walk_entry(d, name, &st);
	return 1;
}

/*
 * Start the census: a second, read-only walk of SOURCE that only counts,
 * run while the main walk waits for room in the queue.  It gives the
 * progress line its totals early.  Hard-linked files count size/nlink.
 */
static void
census_start(int sfd)
{
	/* a new open file description: a dup() would share the walk's offset */
	int fd = src_openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *ds = fd < 0 ? NULL : fdopendir(fd);

	if (ds == NULL) {
		close_keep(fd);
		return;
	}
	g.cen = xmalloc(sizeof *g.cen);
	g.cen->up = NULL;
	g.cen->ds = ds;
	g.cen->rel = xstrdup("");
	g.fdopen++;
}

/* Leave the census's current directory. */
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

/* One entry of the census.  Gives up quietly on any error or no fds. */
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
	if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
	    (de->d_name[1] == '.' && de->d_name[2] == '\0')))
		return;
	if (fstatat(dirfd(c->ds), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !wanted(c->rel, de->d_name, &st))
		return;
	if (!S_ISDIR(st.st_mode)) {
		g.cen_files++;
		if (S_ISREG(st.st_mode))
			g.cen_bytes += st.st_size / (st.st_nlink ? st.st_nlink : 1);
		return;
	}
	if (g.onefs && st.st_dev != g.topdev)
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

/* -- dispatcher (parent side) -- */

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

static void job_fail(struct job *j, const char *why);

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
	g.stop = 1;
	g.walking = 0;
}

static void job_done(struct job *j, const struct msg *m, const struct rep *r);

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
		g.bytes_skipped += S_ISREG(e->mode) ? e->size : 0;
		outcome(OUT_SKIPPED, d, ent_dname(e), NULL);
		return 1;
	case R_CHANGED:         /* copied as read: a warning, exit 1 */
		p = src_path(d, ent_name(e));
		warn_path(1, p, "changed size while being copied (%llu bytes, now %llu)",
		    (unsigned long long)e->size, (unsigned long long)rp->val);
		free(p);
		break;
	case R_NOXATTR:
		if (!g.noxattr_warned++)
			warn_path(0, g.dst, "extended attributes not supported; not copied");
		break;
	case R_VANISHED:
		outcome(OUT_FAIL_SRC, d, ent_name(e), "vanished before it could be copied");
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
		if (rp->err == ENOSPC || rp->err == EDQUOT) {
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
	uint32_t cur = g.ws[i].job, idx = g.ws[i].idx;
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
	job_done(k->fly[0], m, (struct rep *)(m + 1));
	for (f = 1; f < k->nfly; f++)
		k->fly[f - 1] = k->fly[f];
	k->nfly--;
}

/* -- progress -- */

/* Totals shown: the census if it is ahead, the walk's when it is done. */
static void
progress_totals(uint64_t *files, uint64_t *bytes, int *final)
{
	*files = g.found;
	*bytes = g.bytes_found;
	*final = !g.walking;
	if (g.walking && g.cen_files > *files) {
		*files = g.cen_files;
		*bytes = g.cen_bytes > *bytes ? g.cen_bytes : *bytes;
		*final = g.cen_done;
	}
}

/* Bytes written so far, counting the work in progress in each worker. */
static uint64_t
progress_bytes(void)
{
	uint64_t b = g.bytes_done + g.bytes_skipped;
	unsigned i;

	for (i = 0; i < g.jobs; i++)
		if (g.wk[i].nfly > 0 && g.ws[i].job == g.wk[i].fly[0]->id)
			b += g.ws[i].bytes;
	return b;
}

/* Seconds as "1:02:03" or "2:03". */
static const char *
fmt_secs(char *buf, size_t n, double s)
{
	long t = (long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
	return buf;
}

/*
 * Show the progress line: files done/total, percent, bytes, rate, ETA.
 * A '+' marks totals that are still growing.  At most every TICK_MS,
 * unless forced.  Parent only.
 */
static void
progress_show(int force)
{
	static double frate, brate;             /* smoothed files/s and bytes/s */
	static uint64_t lastf, lastb;
	static int64_t lastt;
	uint64_t tf, tb, done = g.copied + g.failed + g.skipped, bdone;
	int final, width = 80, n;
	int64_t t = now_ms();
	double pct, dt, eta = -1;
	char line[256], b1[32], b2[32], b3[32], b4[32];
	struct winsize ws;

	if (!g.progress || (!force && t - g.tlast < (g.progress == 1 ? TICK_MS : 1000)))
		return;
	g.tlast = t;
	progress_totals(&tf, &tb, &final);
	bdone = progress_bytes();
	if (bdone > tb)
		tb = bdone;
	if (done > tf)
		tf = done;
	dt = (t - lastt) / 1000.0;
	if (t - g.t0 < 3000 && t > g.t0) {
		/* the first seconds: the mean so far, steadier than any sample */
		frate = done * 1000.0 / (t - g.t0);
		brate = bdone * 1000.0 / (t - g.t0);
	} else if (lastt && dt > 0.05) {
		double a = dt / (3.0 + dt);     /* then ~3 s smoothing */

		frate += a * ((done - lastf) / dt - frate);
		brate += a * ((bdone - lastb) / dt - brate);
	}
	if (lastt == 0 || dt > 0.05) {
		lastt = t;
		lastf = done;
		lastb = bdone;
	}
	pct = 100.0 * ((tf ? (double)done / tf : 1) + (tb ? (double)bdone / tb : 1)) / 2;
	if (pct < g.pct_shown)
		pct = g.pct_shown;
	if (pct > 100)
		pct = 100;
	g.pct_shown = pct;
	if (final && frate > 0 && brate > 0) {
		double ef = (tf - done) / frate, eb = (tb - bdone) / brate;

		eta = ef > eb ? ef : eb;
	}
	snprintf(line, sizeof line, "%llu/%llu%s files %6.2f%%  %s/%s%s  %s/s  ETA %s",
	    (unsigned long long)done, (unsigned long long)tf, final ? "" : "+", pct,
	    fmt_bytes(b1, sizeof b1, bdone), fmt_bytes(b2, sizeof b2, tb), final ? "" : "+",
	    fmt_bytes(b3, sizeof b3, brate), eta < 0 ? "?" : fmt_secs(b4, sizeof b4, eta));
	if (g.progress == 1) {
		if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
			width = ws.ws_col;
		if (width - 1 < (int)sizeof line)
			line[width - 1] = '\0';
		/* pad over the last line: no escape codes, dumb terminals too */
		n = strlen(line);
		fprintf(stderr, "\r%s%*s", line, g.line_shown > n ? g.line_shown - n : 0, "");
		g.line_shown = n;
	} else
		fprintf(stderr, "pcopy: %s\n", line);
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
	if (g.skipped)
		fprintf(stderr, ", %llu skipped", (unsigned long long)g.skipped);
	if (g.failed)
		fprintf(stderr, ", %llu failed", (unsigned long long)g.failed);
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
		struct wstat *s = &g.ws[i];

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
 * The copy is stopping (destination full): drop the queue and the batches
 * the walk was still filling, so that the ledger balances.
 */
static void
walk_abandon(void)
{
	struct dir *d;

	for (d = g.top; d; d = d->up) {
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
		if (!busy && g.walking && g.cen && !g.stop) {
			for (i = 0; i < 64 && g.cen; i++)
				census_step();
			busy = g.cen != NULL;
		}
		if (!g.walking)
			while (g.cen)
				census_pop();
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
		progress_show(0);
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

/* -- setup -- */

/*
 * Refuse a DEST that is SOURCE or lies inside it: walk up from DEST's
 * nearest existing ancestor to the root comparing (dev, ino).
 */
static void
check_nesting(const struct stat *src, const char *dst)
{
	struct stat st, up;
	char *copy = xstrdup(dst), *p;
	int fd, nfd;

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
	if (fd < 0)
		die("'%s': %s", dst, strerror(errno));
	for (;;) {
		if (fstat(fd, &st) < 0)
			die("'%s': %s", dst, strerror(errno));
		if (st.st_dev == src->st_dev && st.st_ino == src->st_ino)
			die("cannot copy '%s' into itself, '%s'", g.src, dst);
		nfd = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (nfd < 0 || fstat(nfd, &up) < 0)
			break;
		close(fd);
		fd = nfd;
		if (up.st_dev == st.st_dev && up.st_ino == st.st_ino)
			break;
	}
	close(fd);
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
}

/* The worker slots, their shared page, and the workers themselves. */
static void
wk_start(void)
{
	unsigned i;

	g.wk = xmalloc((g.jobs + 1) * sizeof *g.wk);
	g.ws = mmap(NULL, (g.jobs + 1) * sizeof *g.ws, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g.ws == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (i = 0; i < g.jobs; i++)
		g.wk[i].fd = -1;
	for (i = 0; i < g.jobs; i++)
		if (wk_spawn(i) < 0)
			die("cannot start workers: %s", strerror(errno));
}

/* -- usage and main -- */

static void
usage(FILE *f)
{
	fputs(
"usage: pcopy [OPTION]... SOURCE [DEST]\n"
"Copy the directory tree SOURCE to DEST with a pool of worker processes,\n"
"preserving what cp -a preserves.  DEST/P is the copy of SOURCE/P (like\n"
"cp -aT SOURCE DEST).  DEST defaults to SOURCE-copy next to SOURCE; an\n"
"existing DEST directory is merged into.  SOURCE may be a single file.\n"
"\n"
"  -j, --jobs N          worker processes (1-256; default: 4 per online CPU, at\n"
"                        most 64)\n"
"  -q, --quiet           no progress line and no summary (errors are still printed)\n"
"  -v, --verbose         print each copied entry (path below SOURCE) on stdout\n"
"      --progress        show progress even when stderr is not a terminal\n"
"                        (then as plain lines, about once a second)\n"
"  -u, --update          skip regular files whose copy has the same size and\n"
"                        nanosecond mtime; they are not touched at all\n"
"      --verify          read back each file and compare with the source\n"
"                        before giving it its name\n"
"      --fsync           sync each file before its rename, each directory at the end\n"
"  -n, --dry-run         list what would be created, replaced or skipped;\n"
"                        change nothing\n"
"      --exclude GLOB    skip entries whose name matches GLOB, or whose path\n"
"                        below SOURCE matches when GLOB has a '/' (repeatable)\n"
"  -x, --one-file-system  do not descend into other file systems (mount points\n"
"                        are copied as empty directories)\n"
"      --files-from FILE  copy only the paths listed in FILE ('-': stdin), one\n"
"                        per line, relative to SOURCE; directories whole\n"
"  -0, --null            --files-from entries are NUL-separated\n"
"      --shard K/N       copy only shard K of N of the files (stable hash of the\n"
"                        path); N runs into one DEST, then one 'pcopy -u', equal\n"
"                        one run\n"
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

/* --shard K/N: 1 <= K <= N <= 65536, or exit 2. */
static void
parse_shard(const char *s)
{
	char *end;
	unsigned long k, n;

	errno = 0;
	k = strtoul(s, &end, 10);
	if (end == s || *end != '/' || !isdigit((unsigned char)end[1]))
		die("invalid --shard '%s' (want K/N)", s);
	n = strtoul(end + 1, &end, 10);
	if (*end || errno || n < 1 || n > 65536 || k < 1 || k > n)
		die("invalid --shard '%s' (want K/N with 1 <= K <= N)", s);
	g.shard_k = k;
	g.shard_n = n;
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

/* SOURCE with trailing slashes removed, plus "-copy". */
static char *
default_dest(const char *src)
{
	size_t n = strlen(src);
	char *d;

	while (n > 1 && src[n - 1] == '/')
		n--;
	d = xmalloc(n + 6);
	memcpy(d, src, n);
	strcpy(d + n, "-copy");
	return d;
}

static void
parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "progress", no_argument, NULL, 'P' },
		{ "update", no_argument, NULL, 'u' },
		{ "verify", no_argument, NULL, 'C' },
		{ "fsync", no_argument, NULL, 'F' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "exclude", required_argument, NULL, 'E' },
		{ "one-file-system", no_argument, NULL, 'x' },
		{ "files-from", required_argument, NULL, 'L' },
		{ "null", no_argument, NULL, '0' },
		{ "shard", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c, force = 0;
	const char *list = NULL;

	/* 4 per CPU: on ext4 the workers wait on inode-table reads, and -j8
	 * beat -j2 by 1.6x on 2 CPUs; on tmpfs -j2 to -j8 measured the same */
	g.jobs = ncpu < 1 ? 4 : ncpu > 16 ? 64 : 4 * (unsigned)ncpu;
	opterr = 0;
	g.listsep = '\n';
	while ((c = getopt_long(argc, argv, ":j:qvhVunx0", lo, NULL)) != -1) {
		switch (c) {
		case 'j': g.jobs = parse_jobs(optarg); break;
		case 'q': g.quiet = 1; break;
		case 'v': g.verbose = 1; break;
		case 'P': force = 1; break;
		case 'u': g.update = 1; break;
		case 'C': g.verify = 1; break;
		case 'F': g.fsync = 1; break;
		case 'n': g.dryrun = 1; break;
		case 'x': g.onefs = 1; break;
		case '0': g.listsep = '\0'; break;
		case 'L': list = optarg; break;
		case 'S': parse_shard(optarg); break;
		case 'E':
			if (optarg[0] == '\0')
				die("--exclude needs a pattern");
			g.excl = xrealloc(g.excl, (g.nexcl + 1) * sizeof *g.excl);
			g.excl[g.nexcl++] = optarg;
			break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("pcopy %s\n", VERSION); exit(0);
		case ':':
			for (c = 0; lo[c].name && lo[c].val != optopt; c++)
				;
			die("option '-%c' (--%s) needs an argument (try 'pcopy --help')",
			    optopt, lo[c].name ? lo[c].name : "?");
		default:
			if (optopt)
				die("unknown option '-%c' (try 'pcopy --help')", optopt);
			die("unknown option '%s' (try 'pcopy --help')", argv[optind - 1]);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 2)
		die("extra operand '%s' (try 'pcopy --help')", argv[2]);
	if (argc == 0 && !isatty(0))
		die("missing SOURCE (try 'pcopy --help')");
	g.src = argc ? argv[0] : ask_source();
	if (g.src[0] == '\0')
		die("SOURCE is an empty string");
	g.dst = argc == 2 ? argv[1] : default_dest(g.src);
	if (g.dst[0] == '\0')
		die("DEST is an empty string");
	if (!g.quiet && !g.dryrun && (force || isatty(2)))
		g.progress = isatty(2) ? 1 : 2;
	if (list) {
		g.list = strcmp(list, "-") == 0 ? stdin : fopen(list, "r");
		if (g.list == NULL)
			die("--files-from '%s': %s", list, strerror(errno));
	}
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
 * Open SOURCE and DEST and make the top struct dir: the tree's top for a
 * directory, or the two parent directories for a single file.
 */
static struct dir *
setup_dirs(const struct stat *st)
{
	struct dir *d = xmalloc(sizeof *d);
	struct stat dst;
	const char *sbase, *dbase;
	char *sdir, *ddir;
	int dsfd, made;

	memset(d, 0, sizeof *d);
	d->rel = xstrdup("");
	d->st = *st;
	d->pending = 1;
	d->owner = -1;
	if (S_ISDIR(st->st_mode)) {
		check_nesting(st, g.dst);
		d->sfd = src_openat(AT_FDCWD, g.src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (d->sfd < 0)
			die("'%s': %s", g.src, strerror(errno));
		if (fstat(d->sfd, &dst) < 0 || dst.st_dev != st->st_dev || dst.st_ino != st->st_ino)
			die("'%s': changed while being opened", g.src);
		/* DEST itself is never followed if it is a symlink (cp -aT
		 * refuses too): else whoever can write its parent could send
		 * the whole copy elsewhere.  A trailing slash would follow. */
		ddir = xmalloc(strlen(g.dst) + 1);
		strcpy(ddir, g.dst);
		for (made = strlen(ddir); made > 1 && ddir[made - 1] == '/'; made--)
			ddir[made - 1] = '\0';
		made = !g.dryrun && mkdir(ddir, 0700) == 0;
		if (!made && !g.dryrun && errno != EEXIST)
			die("cannot create '%s': %s", g.dst, strerror(errno));
		d->dfd = open(ddir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (d->dfd < 0 && (errno == ENOTDIR || errno == ELOOP) &&
		    lstat(ddir, &dst) == 0 && S_ISLNK(dst.st_mode))
			die("'%s': is a symbolic link; not followed (name the "
			    "directory it points to)", g.dst);
		free(ddir);
		if (d->dfd < 0 && !(g.dryrun && errno == ENOENT))
			die("'%s': %s", g.dst, errno == ENOTDIR ?
			    "exists and is not a directory" : strerror(errno));
		if (d->dfd < 0)
			printf("create %s/\n", g.dst);
		if (g.dryrun) {
			d->nometa = 1;
		} else {
			g.newuid = owner_probe(d->dfd);
			if (fstat(d->dfd, &dst) < 0 || (made && dst.st_uid != g.newuid))
				die("'%s': changed while being created (another "
				    "directory took its name)", g.dst);
			if ((dst.st_mode & S_ISGID) || dst.st_gid != g.egid)
				d->jflags |= JF_SGID;   /* new files get its group */
		}
		if (!g.dryrun)
			tmp_sweep(d->dfd);
		if (g.list)
			return d;       /* --files-from: list_step reads the list */
		if ((dsfd = dup(d->sfd)) < 0 || (d->ds = fdopendir(dsfd)) == NULL)
			die("'%s': %s", g.src, strerror(errno));
		return d;
	}
	if (g.list)
		die("'%s': --files-from needs a directory SOURCE", g.src);
	/* one file or symlink: DEST names the copy */
	if (stat(g.dst, &dst) == 0 && dst.st_dev == st->st_dev && dst.st_ino == st->st_ino)
		die("'%s' and '%s' are the same file", g.src, g.dst);
	sdir = split_path(g.src, &sbase);
	ddir = split_path(g.dst, &dbase);
	d->nometa = 1;
	d->sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->sfd < 0)
		die("'%s': %s", sdir, strerror(errno));
	d->dfd = open(ddir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->dfd < 0)
		die("'%s': %s", ddir, strerror(errno));
	if (fstat(d->dfd, &dst) == 0 && ((dst.st_mode & S_ISGID) || dst.st_gid != g.egid))
		d->jflags |= JF_SGID;
	if (!g.dryrun)
		g.newuid = owner_probe(d->dfd);
	free(sdir);
	free(ddir);
	free(d->rel);
	d->rel = NULL;
	return d;
}

/*
 * Set up the top: open SOURCE and DEST (setup_dirs), decide how files get
 * their names, and for a single-file SOURCE queue its one entry.
 */
static struct dir *
setup_top(const struct stat *st)
{
	struct dir *d = setup_dirs(st);
	const char *sbase, *dbase;
	struct stat dst;
	char *dir;

	g.root = d;
	g.fdopen = (d->sfd >= 0) + (d->dfd >= 0) + (d->ds != NULL);
	g.dstfd = d->dfd;
	if (g.dryrun)
		;
	else if (getenv("PCOPY_NO_TMPFILE"))
		g.tmpmode = TMP_NAMED;  /* for tests: the fallback of old kernels */
	else
		g.tmpmode = tmp_probe(g.dstfd);
	if (S_ISDIR(st->st_mode))
		return d;
	/* one file or symlink: DEST names the copy */
	free(split_path(g.src, &sbase));
	dir = split_path(g.dst, &dbase);
	free(dir);
	if (strlen(dbase) > NAME_MAX || strlen(sbase) > NAME_MAX)
		die("'%s': %s", strlen(dbase) > NAME_MAX ? g.dst : g.src, strerror(ENAMETOOLONG));
	if (g.dryrun)
		printf("%s %s\n", lstat(g.dst, &dst) == 0 ? "replace" : "create", g.dst);
	else {
		g.found++;
		batch_add(d, sbase, strcmp(sbase, dbase) ? dbase : NULL, st, 0);
		batch_flush(d);
	}
	return d;
}


int
main(int argc, char **argv)
{
	struct stat st;
	struct dir *top;

	parse_args(argc, argv);
	if (lstat(g.src, &st) < 0)
		die("'%s': %s", g.src, strerror(errno));
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
		die("'%s': not a directory, regular file or symlink", g.src);
	g.euid = geteuid();
	g.egid = getegid();
	g.newuid = g.euid;
	g.topdev = st.st_dev;
	g.t0 = now_ms();
	umask(0);               /* modes are set exactly; dirs start 0700 */
	fd_budget();
	signals_setup();
	if (g.dryrun)
		g.jobs = 0;     /* -n: the parent alone, nothing is written */

	top = setup_top(&st);
	g.walking = S_ISDIR(st.st_mode);
	g.top = g.walking ? top : NULL;
	if (g.walking && g.progress && !g.list)
		census_start(top->sfd);
	if (!g.walking)
		dir_put(top);   /* single file: its job holds the reference */
	wk_start();

	run();
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
	if (!g.topdone && !g.stop)
		warn_path(1, g.dst, "internal error: a directory was never finished");
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
