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
	rm -f pcopy pcopy-asan pcopy-dbg

.PHONY: all test asan valgrind install bench bench-quick clean
