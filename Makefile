# Shortcuts for ./dev.sh (which needs nothing but Python); see README.md.
.PHONY: setup run test bench
setup:
	./dev.sh setup
run:
	./dev.sh run
test:
	./dev.sh test
bench: setup
	.venv/bin/python benchmarks/bench_optimizers.py
	.venv/bin/python benchmarks/bench_evaluate.py
