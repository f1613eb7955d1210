# xenport: `make demo` and `make test` install what they need on a fresh machine.
SHELL := /bin/bash
NPM_STAMP := node_modules/.xenport-stamp
DEB_STAMP := .tmp/deb-deps-stamp
TSC := node_modules/.bin/tsc
ESBUILD := node_modules/.bin/esbuild

.PHONY: all build deps lint typecheck test demo demo-migrate bench clean

all: build

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(DEB_STAMP): tools/deb-deps.sh
	@mkdir -p .tmp
	./tools/deb-deps.sh
	@touch $@

deps: $(NPM_STAMP) $(DEB_STAMP)

# tsc type-checks everything and emits build/ (tests and benches run from there);
# esbuild bundles the command line into dist/ for ./bin/xl.
build: $(NPM_STAMP)
	$(TSC) -p tsconfig.json
	$(ESBUILD) bin/xl-main.ts --bundle --platform=node --format=esm --target=node20 \
	  --sourcemap --log-level=warning --outfile=dist/xl.js \
	  --banner:js="import { createRequire as __xenportRequire } from 'module'; const require = __xenportRequire(import.meta.url);"

lint: $(NPM_STAMP)
	node_modules/.bin/eslint .

typecheck: $(NPM_STAMP)
	$(TSC) -p tsconfig.json --noEmit

test: deps lint build
	node_modules/.bin/c8 --reporter=text-summary --exclude='build/tests/**' --exclude='tests/**' --exclude='node_modules/**' \
	  node_modules/.bin/ava

demo: deps build
	node build/bin/demo.js

demo-migrate: deps build
	node build/bin/demo-migrate.js

bench: deps build
	node build/bench/run.js

clean:
	rm -rf build dist coverage .tmp
