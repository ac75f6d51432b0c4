#!/bin/sh
# Proxy benchmark and soak against a real gradio 3.41.2; see benches/README.md.
#
#   SD_WEBUI_TEST_PYTHON=/tmp/gvenv/bin/python benches/proxy.sh [bench|soak|all]
#
# PROXY_BENCH_SECONDS (default 10) and PROXY_SOAK_SECONDS (default 60) set the run lengths.
set -eu
: "${SD_WEBUI_TEST_PYTHON:?set SD_WEBUI_TEST_PYTHON to a Python with gradio 3.41.2 (pip install -r tests/requirements-gradio.lock)}"
cd "$(dirname "$0")/.."
case "${1:-all}" in
    bench) set -- bench ;;
    soak) set -- soak ;;
    all) set -- bench soak ;;
    *) echo "usage: $0 [bench|soak|all]" >&2; exit 2 ;;
esac
# The functions are #[ignore]d so that `cargo test --all-targets` never runs them; they are
# built with the bench profile (optimized) and run one at a time.
exec cargo test --profile bench --bench proxy -- --ignored --exact --nocapture --test-threads=1 "$@"
