# zookeeper, the student's tree.  Copy skeleton/ into part1_clone/ to start.
#
# Every Python this Makefile runs is the venv $(VENV): `make setup` (which the other
# targets run first) installs what is missing: Debian packages, the venv.  The set-up,
# rootfs and demo targets, and where they put things: tools/common.mk.
include tools/common.mk
.DEFAULT_GOAL := help
# A VM image the course staff published: make check VM_IMAGE=URL-or-FILE VM_SHA256=HASH
VM_IMAGE  ?=
VM_SHA256 ?=

.PHONY: help check clean

help:
	@echo "make demo           set up (packages, venv, rootfs); from part 4 on, run a container of your newest part"
	@echo "make setup          install what is missing: Debian packages (sudo apt-get), $(VENV)"
	@echo "make check-deps     only say what is missing, install nothing"
	@echo "make rootfs         build $(BUILD)/zoo-fs.tar, unpack it into $(ROOTFS) (as you) if absent"
	@echo "make rootfs-reset   unpack $(ROOTFS) afresh: your changes in it are lost"
	@echo "make rootfs-debian  a Debian minbase rootfs in $(BUILD)/zoo-fs-debian (root or mmdebstrap)"
	@echo "make rootfs-debian-reset  unpack $(BUILD)/zoo-fs-debian afresh"
	@echo "make check          the grader's public checks: in its VM, or here (--local) without one"
	@echo "make diff [PART=N]  what your part N (your newest) adds to your part N-1"
	@echo "make clean          remove $(BUILD) (your rootfs too; the venv stays)"

# In the grader's VM when its image is here or can be had (imported from VM_IMAGE, or
# built as you: ~2 minutes, once); else on this machine (--local), saying why.
# The grader's VM is this machine's architecture: x86_64 or aarch64 (arm64).
QEMU = qemu-system-$(shell uname -m)
QEMU_PACKAGE = $(if $(filter aarch64,$(shell uname -m)),qemu-system-arm,qemu-system-x86)

check: | setup
	@test -n "$(wildcard part*_*/zookeeper.py)" || { echo "make check: no part to check" \
	    "yet: to start, cp -r skeleton $(word 1,$(PART_NAMES)) (README section 4)" >&2; exit 2; }
	@mkdir -p $(BUILD)
	@why=""; \
	if ! command -v $(QEMU) >/dev/null; then \
	    why="no $(QEMU) here: sudo apt-get install $(QEMU_PACKAGE)"; \
	elif [ -z "$(VM_IMAGE)" ] && [ -n "$$(find $(BUILD)/vm.failed -mmin -60 2>/dev/null)" ]; then \
	    why="$$(cat $(BUILD)/vm.failed 2>/dev/null)"; \
	    why="$${why:-the VM image could not be built}; not tried again within the hour: rm $(BUILD)/vm.failed to try now"; \
	else \
	    if [ -n "$(VM_IMAGE)" ]; then \
	        PYTHONUNBUFFERED=1 $(PYTHON) grader/vm.py import "$(VM_IMAGE)" \
	            --sha256 "$(VM_SHA256)" > $(BUILD)/vm.log 2>&1; \
	    else \
	        echo "make check: the grader's VM image (grader/vm.py build, log in $(BUILD)/vm.log)"; \
	        PYTHONUNBUFFERED=1 $(PYTHON) grader/vm.py build > $(BUILD)/vm.log 2>&1; \
	    fi || { \
	        why=$$(tail -n 1 $(BUILD)/vm.log); \
	        why="$${why:-grader/vm.py failed and said nothing (a full disk?): see $(BUILD)/vm.log}"; \
	        echo "$$why" > $(BUILD)/vm.failed; \
	    }; \
	fi; \
	if [ -z "$$why" ]; then \
	    rm -f $(BUILD)/vm.failed; \
	    $(PYTHON) grader/grade . --public; status=$$?; \
	else \
	    echo "make check: no VM ($$why): the public checks run on this machine (--local)"; \
	    $(PYTHON) grader/grade . --local --public --user "$$(id -un)"; status=$$?; \
	fi; \
	echo "make check: these are the public checks, @PUBLIC@ of the course's @TOTAL@" \
	    "points; the hidden checks' @HIDDEN@ are graded after the deadline"; \
	exit $$status

clean:
	rm -rf $(BUILD)
