#!/bin/bash
# Runs on the device machine from the repository root: unpacks what bench/device/bundle.sh packed (xz, or Python's
# lzma where xz is missing), prints the machine, then the gateway bench RUNS times. Results go to $OUT.
# Device call: command `bash .devbench/run.sh`, carry [".devbench/app.tar.xz", ".devbench/node.xz", ".devbench/wrk", ".devbench/run.sh"].
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")" && pwd)
work=/tmp/devbench
rm -rf "$work" && mkdir -p "$work/bin" "$work/app"
unxz() { if command -v xz >/dev/null; then xz -dc -T0 "$1"; else python3 -c 'import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi; }
unxz "$here/node.xz" > "$work/bin/node" && chmod +x "$work/bin/node"
unxz "$here/app.tar.xz" | tar -C "$work/app" -xf -
cp -a "$here/wrk/." "$work/bin/"
export PATH="$work/bin:$PATH"
{
  node -v; wrk -v 2>&1 | head -1; nproc
  grep -m1 "model name" /proc/cpuinfo; grep -m1 MHz /proc/cpuinfo; grep -m1 PRETTY_NAME /etc/os-release
} 2>&1 | tee "$OUT/machine.txt"
cd "$work/app"
for i in $(seq 1 "${RUNS:-3}"); do
  echo "=== run $i $(date -u +%H:%M:%S)"
  node dist/bench/gateway-vs-portkey.js --seconds "${SECONDS_PER_RUN:-4}" --rounds "${ROUNDS:-5}" --loader wrk 2>&1
done 2>&1 | tee "$OUT/gateway.txt"
