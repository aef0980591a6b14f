# Convenience targets; the README's two commands do not need make.
.PHONY: setup lab test bench cleanup

setup:
	./setup.sh

lab: setup
	.venv/bin/lab run

test: setup
	.venv/bin/pytest -ra

bench: setup
	.venv/bin/python -m benchmarks.bench_bringup

cleanup:
	.venv/bin/lab cleanup

# The real-kernel test VM (QEMU; netem and the OVS kernel datapath): tests/vm/run.sh
.PHONY: vm-test
vm-test:
	tests/vm/run.sh
