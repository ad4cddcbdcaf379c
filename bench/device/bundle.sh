#!/bin/bash
# Packs what the gateway bench needs to run on a machine with nothing installed and no network (a lent device
# machine): the Node binary, wrk with the libraries it links, and dist/ with node_modules minus what the bench
# never loads (node-llama-cpp's prebuilt binaries and llama.cpp sources, compilers, linters, browsers).
# Writes .devbench/ (git-ignored), about 40 MB; run it there with `bash .devbench/run.sh` (bench/device/run.sh).
# Needs a built checkout (npm ci) and Debian's wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.devbench
rm -rf "$out" && mkdir -p "$out/app" "$out/wrk"
rsync -a \
  --exclude=/@node-llama-cpp --exclude=/node-llama-cpp/llama/gitRelease.bundle --exclude=/typescript --exclude=/prettier \
  --exclude=/playwright-core --exclude=/eslint --exclude=/@eslint --exclude=/@typescript-eslint --exclude=/axe-core \
  --exclude=/@types --exclude=/openai --exclude=/.cache --exclude=better-sqlite3/deps --exclude=better-sqlite3/src \
  node_modules/ "$out/app/node_modules/"
cp -a dist package.json "$out/app/"
rm -rf "$out/app/dist/test" "$out/app/dist/docs"
tar -C "$out/app" -cf - . | xz -T0 -6 > "$out/app.tar.xz"
rm -rf "$out/app"
strip -o "$out/node" "$(readlink -f "$(command -v node)")" && xz -T0 -9 "$out/node"
wrk=$(command -v wrk)
cp "$wrk" "$out/wrk/wrk.bin"
ldd "$wrk" | awk '/=> \// && !/libc\.so|libm\.so|libpthread|libdl|ld-linux/ { print $3 }' | xargs -r cp -L -t "$out/wrk/"
printf '#!/bin/sh\n# wrk with the libraries it was built against beside it.\nhere=$(dirname "$(readlink -f "$0")")\nLD_LIBRARY_PATH="$here" exec "$here/wrk.bin" "$@"\n' > "$out/wrk/wrk"
chmod +x "$out/wrk/wrk"
cp bench/device/run.sh "$out/run.sh"
du -sh "$out"
