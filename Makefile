.POSIX:
# pcopy: a static musl binary by default.  `make CC=gcc LDFLAGS=` for a dynamic dev build.
CC = musl-gcc
CFLAGS = -O2
LDFLAGS = -static -s
PREFIX = /usr/local
WARN = -Wall -Wextra -Wshadow
ALLCFLAGS = $(CFLAGS) $(WARN)

all: pcopy

pcopy: pcopy.c
	@command -v $(CC) >/dev/null 2>&1 || { echo "make: '$(CC)' not found: install it with 'apt-get install -y musl-tools' (or run 'make CC=gcc LDFLAGS=' for a dynamic build)" >&2; exit 1; }
	$(CC) $(ALLCFLAGS) -o $@ pcopy.c $(LDFLAGS)

test: pcopy
	./test.sh ./pcopy

# Static musl binaries for other architectures, built with Debian's cross
# compilers (README: "Download / build for your architecture").  CROSS is
# what `make cross' builds and `make test-cross' tests, e.g.
# `make cross CROSS="pcopy-aarch64 pcopy-armv7"' to leave riscv64 out.
CROSS = pcopy-aarch64 pcopy-armv7 pcopy-riscv64
CC_AARCH64 = aarch64-linux-musl-gcc
CC_ARMV7 = arm-linux-musleabihf-gcc
CC_RISCV64 = riscv64-linux-musl-gcc
ARMV7FLAGS = -march=armv7-a -mthumb -mfloat-abi=hard -mfpu=vfpv3-d16
# the cases each cross binary runs under qemu (empty: all of them)
TESTS_AARCH64 =
TESTS_ARMV7 =
TESTS_RISCV64 =
# data, metadata, holes, xattrs/ACLs, signals, a killed worker, ENOSPC, -u
TESTS_SUBSET = t_compare_detects t_binary_bytes t_sizes t_nested \
	t_many_small t_odd_names t_long_path t_symlinks t_modes t_mtimes \
	t_hardlinks t_special_files t_static t_sparse t_xattrs t_acl \
	t_partial_failure t_sigint t_worker_killed t_enospc t_update t_verify
# a quick look at a port, e.g. make test-cross TESTS_RISCV64='$(TESTS_SMOKE)'
TESTS_SMOKE = t_compare_detects t_sizes t_symlinks t_modes t_hardlinks \
	t_special_files t_sparse t_xattrs
NEEDCC = sh -c 'command -v "$$0" >/dev/null 2>&1 || { echo "make: $$0 not found: $$1" >&2; exit 1; }'

cross: $(CROSS)

pcopy-aarch64: pcopy.c
	@$(NEEDCC) $(CC_AARCH64) "dpkg --add-architecture arm64; apt-get update; apt-get install -y gcc-aarch64-linux-gnu musl-dev:arm64"
	$(CC_AARCH64) $(ALLCFLAGS) -o $@ pcopy.c $(LDFLAGS)

pcopy-armv7: pcopy.c
	@$(NEEDCC) $(CC_ARMV7) "dpkg --add-architecture armhf; apt-get update; apt-get install -y gcc-arm-linux-gnueabihf musl-dev:armhf"
	$(CC_ARMV7) $(ARMV7FLAGS) $(ALLCFLAGS) -o $@ pcopy.c $(LDFLAGS)

pcopy-riscv64: pcopy.c
	@$(NEEDCC) $(CC_RISCV64) "apt-get install -y gcc-riscv64-linux-gnu dpkg-dev; sh .ci/musl-riscv64 (builds musl from Debian's source)"
	$(CC_RISCV64) $(ALLCFLAGS) -o $@ pcopy.c $(LDFLAGS)

# Each cross binary through the whole suite under qemu-user
# (qemu-user-static).  The suites run side by side (most of a case's time
# is spent waiting: for processes, for the emulated binary), each into a
# log printed when all are done; CROSS_SERIAL=1 runs them one by one.
test-cross: $(CROSS)
	@for b in $(CROSS); do \
		case $$b in \
		*-aarch64) q=qemu-aarch64-static ;; \
		*-armv7) q=qemu-arm-static ;; \
		*-riscv64) q=qemu-riscv64-static ;; \
		*) echo "make: $$b: no qemu known" >&2; exit 1 ;; \
		esac; \
		$(NEEDCC) $$q "apt-get install -y qemu-user-static" || exit 1; \
	done
	@st=0; pids=; for b in $(CROSS); do \
		case $$b in \
		*-aarch64) q=qemu-aarch64-static c='$(TESTS_AARCH64)' ;; \
		*-armv7) q=qemu-arm-static c='$(TESTS_ARMV7)' ;; \
		*-riscv64) q=qemu-riscv64-static c='$(TESTS_RISCV64)' ;; \
		esac; \
		echo "== $$b under $$q: $${c:-all cases} ==" >$$b.test.log; \
		if [ -n "$(CROSS_SERIAL)" ]; then \
			PCOPY_WRAP=$$q ./test.sh ./$$b $$c >>$$b.test.log 2>&1 || st=1; \
			cat $$b.test.log; \
		else \
			PCOPY_WRAP=$$q ./test.sh ./$$b $$c >>$$b.test.log 2>&1 & \
			pids="$$pids $$!"; \
		fi; \
	done; \
	for p in $$pids; do wait $$p || st=1; done; \
	if [ -z "$(CROSS_SERIAL)" ]; then \
		for b in $(CROSS); do cat $$b.test.log; done; \
	fi; \
	rm -f $(CROSS:=.test.log); exit $$st

# clang -Wshorten-64-to-32 on the armv7 build (musl-dev:armhf headers):
# a 64-bit count or offset cut to 32 bits is an error.
check-widths:
	@$(NEEDCC) clang "apt-get install -y clang"
	clang --target=armv7-linux-musleabihf $(ARMV7FLAGS) -nostdinc \
	    -isystem /usr/include/arm-linux-musleabihf \
	    -isystem "$$(clang -print-resource-dir)/include" \
	    -fsyntax-only -Werror -Wshorten-64-to-32 pcopy.c

# dist/pcopy-VERSION-ARCH for the native and every cross binary, and
# dist/SHA256SUMS; everything is rebuilt first.  `make release-check'
# builds it all again in another directory and compares the checksums.
release:
	$(MAKE) clean
	$(MAKE) pcopy $(CROSS)
	rm -rf dist
	mkdir dist
	v=$$(sed -n 's/^#define VERSION "\(.*\)"/\1/p' pcopy.c); \
	cp pcopy dist/pcopy-$$v-$$(uname -m) && \
	for b in $(CROSS); do cp $$b dist/pcopy-$$v-$${b#pcopy-} || exit 1; done
	cd dist && LC_ALL=C sha256sum pcopy-* >SHA256SUMS
	cat dist/SHA256SUMS

release-check: release
	t=$$(mktemp -d /tmp/pcopy-release.XXXXXX) && \
	cp pcopy.c Makefile "$$t" && \
	(cd "$$t" && $(MAKE) release >/dev/null) && \
	if cmp dist/SHA256SUMS "$$t/dist/SHA256SUMS"; then \
		echo "release-check: the same bytes from $$t"; rm -rf "$$t"; \
	else \
		diff dist/SHA256SUMS "$$t/dist/SHA256SUMS"; rm -rf "$$t"; exit 1; \
	fi

# ASan + UBSan, dynamic, with gcc: the same test suite.
asan: pcopy-asan
	PCOPY_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ./test.sh ./pcopy-asan

pcopy-asan: pcopy.c
	gcc -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer $(WARN) -o $@ pcopy.c

# valgrind over the whole suite (dynamic gcc build; children followed).
valgrind: pcopy-dbg
	PCOPY_WRAP="valgrind -q --error-exitcode=99 --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite" ./test.sh ./pcopy-dbg

pcopy-dbg: pcopy.c
	gcc -g -O1 $(WARN) -o $@ pcopy.c

install: pcopy
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	cp pcopy $(DESTDIR)$(PREFIX)/bin/pcopy
	chmod 755 $(DESTDIR)$(PREFIX)/bin/pcopy
	if [ -f doc/pcopy.1 ]; then cp doc/pcopy.1 $(DESTDIR)$(PREFIX)/share/man/man1/pcopy.1; fi

# the full race (~15 min); 'make bench-quick' is one round of small + real
bench: pcopy
	bench/bench.sh

bench-quick: pcopy
	bench/bench.sh --quick

clean:
	rm -f pcopy pcopy-asan pcopy-dbg pcopy-aarch64 pcopy-armv7 pcopy-riscv64 *.test.log

.PHONY: all test cross test-cross check-widths release release-check asan valgrind install bench bench-quick clean
