# promo — developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PROTOS := $(wildcard protos/promo/v1/*.proto)
GEN    := client
BUF_VERSION ?= 1.75.0

.PHONY: install run test test-sqlite test-postgres proto proto-check lint bench soak clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: install
	@echo "promo: serving on $${PROMO_LISTEN:-127.0.0.1:50051}, database $${PROMO_DATABASE_URL:-sqlite:///promo.db}"
	@echo "In another terminal:"
	@echo "  export PROMO_API_KEY=\$$($(BIN)/promo-server create-project demo | tail -n 1)"
	@echo "  $(BIN)/promo promotions create --file examples/promotion.json"
	@echo "  $(BIN)/promo promotions get summer-sale"
	exec $(BIN)/promo-server serve

# Every test runs on SQLite and on PostgreSQL (a throw-away database per run).
test: install proto-check
	$(BIN)/pytest

proto: install
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$(GEN) --pyi_out=$(GEN) \
		--grpc_python_out=$(GEN) $(PROTOS)

# Regenerates the stubs into a scratch folder and fails on any difference.
proto-check: install
	@rm -rf .proto-check && mkdir -p .proto-check
	@$(PY) -m grpc_tools.protoc -Iprotos --python_out=.proto-check --pyi_out=.proto-check \
		--grpc_python_out=.proto-check $(PROTOS)
	@diff -r -x __init__.py -x __pycache__ .proto-check/promo/v1 $(GEN)/promo/v1 \
		|| (echo "generated stubs are stale: run 'make proto' and commit"; rm -rf .proto-check; exit 1)
	@rm -rf .proto-check

.tools/node_modules/.bin/buf:
	npm install --silent --no-save --prefix .tools @bufbuild/buf@$(BUF_VERSION)

lint: install .tools/node_modules/.bin/buf
	.tools/node_modules/.bin/buf lint
	$(BIN)/ruff check server client tests bench
	$(BIN)/mypy

bench: install
	$(PY) -m bench
	$(PY) -m bench --profile activate --calls 300  # where one redeem's time goes

# A long mixed workload on each database; SOAK_MINUTES per database (default 10).
SOAK_MINUTES ?= 10
soak: install
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .tools .proto-check build *.egg-info .pytest_cache .mypy_cache .ruff_cache
