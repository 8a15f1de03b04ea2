#!/usr/bin/env bash
# Runs each cargo-fuzz target for FUZZ_SECONDS (default 20). Installs
# cargo-fuzz when missing. libFuzzer needs a nightly compiler for its
# sanitizer flags; without one, stable runs it with --sanitizer none
# (RUSTC_BOOTSTRAP allows the coverage flags): less checking, same inputs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
if rustup run nightly rustc --version >/dev/null 2>&1; then
  run=(cargo +nightly fuzz run)
else
  echo "fuzz: no nightly toolchain; running with --sanitizer none on stable"
  export RUSTC_BOOTSTRAP=1
  run=(cargo fuzz run --sanitizer none)
fi
mkdir -p artifacts
for t in hook_args config pubsub control; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${secs}s"
  log="artifacts/$t.log"
  # Quiet on success; on a finding, the crash report and the reproducer
  # path, which sit well above the last lines of libFuzzer's output.
  if ! "${run[@]}" "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t found a problem; full output in fuzz/$log" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" || tail -n 1 "$log"
done
echo "fuzz: all targets ran ${secs}s without a finding"
