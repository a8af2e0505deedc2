# zookeeper: the lab's one-command entry points.  `make help` lists them.
PYTHON  ?= python3
BUILD   ?= build
ROOTFS  ?= $(BUILD)/zoo-fs
PART    ?= 6
PARTDIR  = $(firstword $(wildcard part$(PART)_*))

.PHONY: help demo rootfs rootfs-debian check-deps parts skeleton generate-check diff \
        test test-deps test-quick lint vm vm-info test-vm grade bench bench-quick handout clean

help:
	@echo "make demo           build the busybox rootfs and run a container that shows its isolation"
	@echo "make rootfs         build $(BUILD)/zoo-fs.tar and unpack it into $(ROOTFS) (as you)"
	@echo "make rootfs-debian  a Debian minbase rootfs (needs root or mmdebstrap) in $(BUILD)/zoo-fs-debian"
	@echo "make test           install the test dependencies (root) and run every test, VM included"
	@echo "make test-quick     the tests that need no VM"
	@echo "make parts          write part1..part6 from src/;  make skeleton: write skeleton/"
	@echo "make diff PART=N    stage N's lesson: part N-1 against part N"
	@echo "make vm             build (or reuse) the grader's VM image"
	@echo "make grade SUB=DIR  grade a submission in the VM"
	@echo "make bench          benchmarks (as root: everything; build/bench.json); bench-quick: CI's"
	@echo "make handout        the student tree in $(BUILD)/handout"

check-deps:
	@sh tools/check-deps.sh rootfs run

$(BUILD)/zoo-fs.tar: tools/mkrootfs.py
	@sh tools/check-deps.sh rootfs
	@mkdir -p $(BUILD)
	$(PYTHON) tools/mkrootfs.py busybox $@

rootfs: $(BUILD)/zoo-fs.tar
	$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs.tar $(ROOTFS)

# Build as root (debootstrap) or with mmdebstrap; unpack as yourself, so the files
# are owned by root inside your containers (not by nobody).
$(BUILD)/zoo-fs-debian.tar: tools/mkrootfs.py
	@sh tools/check-deps.sh rootfs-debian
	@mkdir -p $(BUILD)
	$(PYTHON) tools/mkrootfs.py debian $@

rootfs-debian: $(BUILD)/zoo-fs-debian.tar
	$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs-debian.tar $(BUILD)/zoo-fs-debian

demo: check-deps rootfs
	@sh tools/demo.sh $(ROOTFS)

parts:
	$(PYTHON) tools/generate.py --only parts

skeleton:
	$(PYTHON) tools/generate.py --only skeleton

generate-check:
	$(PYTHON) tools/generate.py --check

diff:
	@test $(PART) -ge 2 -a $(PART) -le 6 || { echo "make diff PART=N with N in 2..6"; exit 2; }
	@diff -ru --exclude=__pycache__ $(wildcard part$(shell expr $(PART) - 1)_*) $(PARTDIR) || true

test-deps:
	sh tools/setup-test-env.sh

lint:
	$(PYTHON) -m ruff check .

test: test-deps lint generate-check
	$(PYTHON) -m pytest -q -p no:cacheprovider

test-quick: lint generate-check
	$(PYTHON) -m pytest -q -p no:cacheprovider -m "not vm and not slow"

VM_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
vm:
	$(VM_SUDO) $(PYTHON) grader/vm.py build

vm-info:
	$(PYTHON) grader/vm.py info

test-vm:
	$(PYTHON) -m pytest -q -p no:cacheprovider -m vm

grade:
	@test -n "$(SUB)" || { echo "make grade SUB=DIR"; exit 2; }
	grader/grade $(SUB)

bench:
	$(PYTHON) bench/run.py

bench-quick:
	$(PYTHON) bench/run.py --quick

handout:
	$(PYTHON) tools/handout.py $(BUILD)/handout

clean:
	rm -rf $(BUILD)
