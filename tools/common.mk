# What the repo's Makefile and the student's (tools/handout.mk) share, included by
# both: where the venv, the build and the rootfs are, and the set-up, rootfs, demo
# and diff targets.
VENV   ?= .venv
PYTHON ?= $(VENV)/bin/python3
BUILD  ?= build
ROOTFS ?= $(BUILD)/zoo-fs
PART   ?= 6
SETUP   = VENV=$(VENV) sh tools/check-deps.sh --install

.PHONY: setup check-deps demo diff rootfs rootfs-reset rootfs-debian rootfs-debian-reset

setup:
	@$(SETUP) rootfs run

check-deps:
	@VENV=$(VENV) sh tools/check-deps.sh rootfs run

# `| setup`: set up first, without making the tarball out of date each time.
$(BUILD)/zoo-fs.tar: tools/mkrootfs.py | setup
	@mkdir -p $(BUILD)
	$(PYTHON) tools/mkrootfs.py busybox $@

# The rootfs is yours once unpacked (`apt install cowsay` stays): --keep unpacks it
# only when it is absent.  rootfs-reset starts afresh.
rootfs: $(BUILD)/zoo-fs.tar
	$(PYTHON) tools/mkrootfs.py unpack --keep $(BUILD)/zoo-fs.tar $(ROOTFS)

rootfs-reset: $(BUILD)/zoo-fs.tar
	$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs.tar $(ROOTFS)

# Build as root (debootstrap) or with mmdebstrap; unpack as yourself, so the files
# are owned by root inside your containers (not by nobody).
$(BUILD)/zoo-fs-debian.tar: tools/mkrootfs.py | setup
	@$(SETUP) rootfs-debian
	@mkdir -p $(BUILD)
	$(PYTHON) tools/mkrootfs.py debian $@

rootfs-debian: $(BUILD)/zoo-fs-debian.tar
	$(PYTHON) tools/mkrootfs.py unpack --keep $(BUILD)/zoo-fs-debian.tar $(BUILD)/zoo-fs-debian

rootfs-debian-reset: $(BUILD)/zoo-fs-debian.tar
	$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs-debian.tar $(BUILD)/zoo-fs-debian

demo: setup rootfs
	@PYTHON=$(PYTHON) sh tools/demo.sh $(ROOTFS)

# What stage PART adds to the one before: each new module shown whole (-N).
diff:
	@test $(PART) -ge 2 -a $(PART) -le 6 || { echo "make diff PART=N with N in 2..6"; exit 2; }
	@diff -ruN --exclude=__pycache__ $(wildcard part$(shell expr $(PART) - 1)_*) \
		$(firstword $(wildcard part$(PART)_*)) || true
