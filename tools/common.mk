# What the repo's Makefile and the student's (tools/handout.mk) share, included by
# both: where the venv, the build and the rootfs are, and the set-up, rootfs, demo
# and diff targets.
VENV   ?= .venv
PYTHON ?= $(VENV)/bin/python3
BUILD  ?= build
ROOTFS ?= $(BUILD)/zoo-fs
# make diff's part: the newest partN_*/ here from 2 on, unless PART=N is given.
PART   ?= $(lastword $(foreach n,2 3 4 5 6,$(if $(wildcard part$(n)_*/),$(n))))
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
# Part N's directory is the first partN_* here by name, as the grader picks it
# (part3_seccomp before part3_seccomp.bak: sorted without the slash, which sorts
# before it): a copy keeps the prefix, not necessarily the rest of the name (README
# section 4), so PART_NAMES (the list tools/generate.py makes the parts by) only
# names what is missing.  (read only when a message needs it: `=`, not `:=`).
TOOLS_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
PART_NAMES = $(shell cat $(TOOLS_DIR)part-names.txt)
part_dir = $(firstword $(sort $(patsubst %/,%,$(wildcard part$(1)_*/))))
# Stop, in one line, when part $(1) has no directory: a student makes each from the
# one before (part 1 from skeleton/).
need_part = test -n "$(call part_dir,$(1))" || { \
	echo "make diff: $(word $(1),$(PART_NAMES))/ is not there yet: copy" \
	    "$(if $(filter 1,$(1)),skeleton/,your part $(shell expr $(1) - 1))" \
	    "into it (README section 4)" >&2; exit 2; }

# diff exits 1 when the parts differ (what it is for), 2 when it could not compare;
# 141 (SIGPIPE) is a `| less` or `| head` that stopped reading: no failure either.
# Make expands a recipe's lines before it runs the first: those that compute with
# PART are there only when PART is one they can take (PART=1 made $(word 0,...) stop
# make with its own error, not this usage line).
diff:
ifeq ($(filter 2 3 4 5 6,$(PART)),)
	@echo "make diff PART=N with N in 2..6" >&2; exit 2
else
	@$(call need_part,$(shell expr $(PART) - 1))
	@$(call need_part,$(PART))
	@diff -ruN --exclude=__pycache__ $(call part_dir,$(shell expr $(PART) - 1)) \
		$(call part_dir,$(PART)); s=$$?; test $$s -le 1 -o $$s -eq 141
endif
