#!/bin/sh
# Proxy benchmark and soak against a real gradio 3.41.2; see benches/README.md.
#
#   SD_WEBUI_TEST_PYTHON=/tmp/gvenv/bin/python benches/proxy.sh [bench|soak|all]
#
# PROXY_BENCH_SECONDS (default 10 per side), PROXY_BENCH_PARTS (default latency,api,files),
# PROXY_SOAK_SECONDS (default 60) tune the runs. PROXY_BENCH_RUN_PREFIX is put in front of
# the run (not the build), e.g. "nice -n -10" or "chrt -f 10" on a busy machine.
set -eu
: "${SD_WEBUI_TEST_PYTHON:?set SD_WEBUI_TEST_PYTHON to a Python with gradio 3.41.2 (pip install -r tests/requirements-gradio.lock)}"
cd "$(dirname "$0")/.."
case "${1:-all}" in
bench) set -- bench ;;
soak) set -- soak ;;
all) set -- bench soak ;;
*)
  echo "usage: $0 [bench|soak|all]" >&2
  exit 2
  ;;
esac
# The functions are #[ignore]d so that `cargo test --all-targets` never runs them. Build with
# the bench profile (optimized) first, then run the binary itself, one function at a time.
binary=$(cargo test --profile bench --bench proxy --no-run --message-format=json-render-diagnostics |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -n "$binary" ] || {
  echo "could not build the benchmark" >&2
  exit 1
}
# shellcheck disable=SC2086 # the prefix is meant to split into words
exec ${PROXY_BENCH_RUN_PREFIX-} "$binary" --ignored --exact --nocapture --test-threads=1 "$@"
