#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Records the git commit the build comes from in build/js/src/REVISION, for
# bpfnet_build_info{revision} where there is no .git (an npm package, an
# image): the checkout's HEAD. Outside a git checkout nothing is recorded (the revision is "unknown").
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/js/src/REVISION
mkdir -p "$(dirname "$out")"
if rev=$(git rev-parse --verify HEAD 2>/dev/null); then
  echo "$rev" > "$out"
else
  rm -f "$out"
fi
