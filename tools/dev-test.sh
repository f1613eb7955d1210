#!/usr/bin/env bash
# Build and test one part of the tree in isolation, so that work in progress
# elsewhere cannot break it:  tools/dev-test.sh NAME 'glob' ['glob' ...]
#   e.g. tools/dev-test.sh ring 'hypervisor/public/io/ring.ts' 'tests/ring/**/*.ts'
# Compiles only the given files (and what they import) into .tmp/NAME/ and
# runs the ava tests among them.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
out=.tmp/$name
mkdir -p "$out"
inc=$(printf '"../../%s",' "$@"); inc=${inc%,}
cat > "$out/tsconfig.json" <<JSON
{ "extends": "../../tsconfig.json",
  "compilerOptions": { "rootDir": "../..", "outDir": ".", "tsBuildInfoFile": "./.tsbuildinfo" },
  "include": [$inc] }
JSON
node_modules/.bin/tsc -p "$out/tsconfig.json"
cat > "$out/ava.config.mjs" <<JS
export default { files: ['$out/tests/**/*.test.js'], timeout: '3m', workerThreads: false };
JS
node_modules/.bin/ava --config "$out/ava.config.mjs" ${AVA_ARGS:-}
