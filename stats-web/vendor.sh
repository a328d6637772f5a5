#!/usr/bin/env bash
# Refreshes stats-web/vendor/ from the ECharts version pinned in package.json / package-lock.json.
# To move to another version: edit "echarts" in package.json, run `npm install` here, then this script.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --no-audit --no-fund

mkdir -p vendor
cp node_modules/echarts/dist/echarts.min.js vendor/echarts.min.js
cp node_modules/echarts/LICENSE vendor/LICENSE-echarts.txt
if [[ -f node_modules/echarts/NOTICE ]]; then
    cp node_modules/echarts/NOTICE vendor/NOTICE-echarts.txt
else
    rm -f vendor/NOTICE-echarts.txt
fi
# echarts.min.js bundles zrender (BSD 3-Clause) and parts of d3 (BSD 3-Clause): keep their terms beside it.
cp node_modules/zrender/LICENSE vendor/LICENSE-zrender.txt
cp node_modules/echarts/licenses/LICENSE-d3 vendor/LICENSE-d3.txt

version=$(node -p 'require("./node_modules/echarts/package.json").version')
echo "vendored echarts ${version}:"
ls -l vendor/
