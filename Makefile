# xvloop: thin wrapper over meson + ninja.  See `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := all

NINJA ?= ninja
# seconds per fuzz target: `make fuzz` / the smoke run inside `make check`
FUZZ_TIME ?= 60
FUZZ_SMOKE ?= 10
export FUZZ_SMOKE
# fio sources for the external ioengine (see scripts/fio-headers.sh);
# FIO_SRC=none builds without them.
FIO_SRC ?= .fio-src
# `make install`: where to (meson prefix) and a staging root (empty: /).
PREFIX ?= /usr/local
DESTDIR ?=

# Pass -Dfio_src=... only once the tree has that meson option.
HAVE_FIO_OPT := $(shell grep -qs "fio_src" meson_options.txt meson.options && echo yes)
fio_opt = $$(if [ "$(HAVE_FIO_OPT)" = yes ] && [ "$(FIO_SRC)" != none ]; then p=$$(scripts/fio-headers.sh "$(FIO_SRC)") || exit 1; echo "-Dfio_src=$$p"; fi)

.PHONY: all help deps build demo check build-asan build-aarch64 build-riscv64 \
	build-aarch64-static build-static cross freestanding fuzz fuzz-build fio-headers install uninstall clean distclean \
	module module-clean vm-demo

all: deps build

help:
	@echo "make [all]      install missing Debian packages, configure and build ./build"
	@echo "make demo       build, then run ./build/src/cli/xvl demo"
	@echo "make check      every build (native, ASan/UBSan, aarch64, riscv64, freestanding core,"
	@echo "                fuzzers) and every test (tests/run.sh); ends with 'N passed, N failed'"
	@echo "make fuzz       build the libFuzzer targets, run each FUZZ_TIME=$(FUZZ_TIME) s"
	@echo "make module     build kernel/xvl_virtio.ko (W=1) against the guest kernel's headers"
	@echo "                (scripts/guest/kernel.sh --headers installs them; KBUILD=DIR overrides)"
	@echo "make vm-demo    a Linux VM compartment (Debian's kernel + xvl_virtio.ko) on a disk served"
	@echo "                by xvl server: mkfs.ext4, files, fsck, fio --verify (scripts/vm-demo.sh)"
	@echo "make install    build ./build-install for PREFIX=$(PREFIX) and install it (DESTDIR honoured)"
	@echo "make uninstall  remove what make install installed"
	@echo "make clean      remove build directories (distclean: also .fio-src)"

deps:
	@scripts/deps.sh

fio-headers: deps
	@scripts/fio-headers.sh "$(FIO_SRC)"

build: deps
	@opts="$(fio_opt)" && scripts/meson-setup.sh build $$opts
	$(NINJA) -C build

build-asan: deps
	@opts="$(fio_opt)" && scripts/meson-setup.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false $$opts
	$(NINJA) -C build-asan

build-aarch64 build-riscv64: build-%: deps
	@scripts/meson-setup.sh $@ --cross-file cross/$*.ini
	$(NINJA) -C $@

# The whole stack for aarch64, linked statically: what the arm64 guest runs.
build-aarch64-static: deps
	@scripts/meson-setup.sh $@ --cross-file cross/aarch64.ini -Dprefer_static=true -Dc_link_args=-static
	$(NINJA) -C $@ src/cli/xvl

# xvl linked statically for this host's architecture: what a device-compartment VM runs
# (scripts/guest/device-initrd.sh).
build-static: deps
	@scripts/meson-setup.sh $@ -Dprefer_static=true -Dc_link_args=-static
	$(NINJA) -C $@ src/cli/xvl

cross: build-aarch64 build-riscv64

freestanding:
	@scripts/freestanding.sh build-freestanding
	@scripts/kernel-core.sh build-kernel-core

fuzz-build: deps
	@scripts/fuzz.sh build

fuzz: fuzz-build
	@scripts/fuzz.sh run $(FUZZ_TIME)

# The kernel transport, against Debian's guest kernel headers (docs/KERNEL.md).
module:
	@kb="$(KBUILD)"; [ -n "$$kb" ] || kb=$$(scripts/guest/kernel.sh --headers | sed -n 's/^KBUILD=//p'); \
	[ -n "$$kb" ] || { echo "make module: no guest kernel headers" >&2; exit 1; }; \
	$(MAKE) -C "$$kb" M=$(CURDIR)/kernel W=1 modules

module-clean:
	$(MAKE) -C kernel clean

# A VM driver compartment on an xvloop disk (scripts/vm-demo.sh).
vm-demo: build module
	scripts/vm-demo.sh

# Its own build directory, so that ./build keeps its default prefix.
install: deps
	@opts="$(fio_opt)" && scripts/meson-setup.sh build-install --prefix="$(abspath $(PREFIX))" $$opts
	$(NINJA) -C build-install
	meson install -C build-install --no-rebuild $(if $(DESTDIR),--destdir "$(abspath $(DESTDIR))")
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

# Removes what the last `make install` installed (meson's install log).
uninstall:
	@[ -f build-install/meson-logs/install-log.txt ] || { echo "nothing installed from build-install"; exit 1; }
	$(NINJA) -C build-install uninstall

demo: all
	./build/src/cli/xvl demo

# Builds every configuration and runs every suite; a build that fails is shown
# and counted as a failure (the remaining stages still run).
check: deps
	@tests/run.sh --build

clean:
	rm -rf build build-asan build-aarch64 build-aarch64-static build-static build-riscv64 build-freestanding build-kernel-core build-fuzz build-install build-logs

distclean: clean
	rm -rf .fio-src
