# Shortcuts for ./dev.sh (which needs nothing but Python); see README.md.
.PHONY: setup run test bench docs notebooks
setup:
	./dev.sh setup
run:
	./dev.sh run
test:
	./dev.sh test
docs:
	./dev.sh docs
notebooks:
	./dev.sh notebooks
bench: setup
	.venv/bin/python benchmarks/bench_optimizers.py
	.venv/bin/python benchmarks/bench_evaluate.py
