#!/usr/bin/env bash
# ../shared/gpu/pack.sh, slimmed to fit the device tool's 64 MiB transfer: node_modules without
# the TypeScript compilers and the PNG renderer's native binary (type-checking and reports are done
# here, not on the GPU host), and without npm (the GPU checks run node directly).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
npm run -s build
bash ../shared/gpu/pack.sh >/dev/null 2>&1 || true
tar -cJf .gpu/node_modules.tar.xz \
  --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='node_modules/.cache' \
  --exclude='node_modules/@typescript' --exclude='node_modules/.bin/tsgo' --exclude='node_modules/typescript' \
  --exclude='node_modules/@resvg' node_modules
rm -f .gpu/npm.tar.xz
du -sh .gpu
