#!/usr/bin/env bash
# Build the library as one zip for `spark-submit --py-files`: dist/adlake-<version>.zip holds
# the `adlake` package (lib/adlake, no caches), importable from the zip on the driver and the
# executors. Prints the zip's path. Usage: scripts/package.sh [OUT_DIR]   (default: dist)
# Only the package is shipped: its dependencies (pyyaml, pycountry, numpy, pyarrow, prometheus-client)
# must be installed in the driver's Python on the cluster. The test-data generator
# (lib/adlake_datagen) is not production code and is not shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
py="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
"$py" - "$out" <<'PY'
import sys
import tomllib
import zipfile
from pathlib import Path

out = Path(sys.argv[1])
version = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
target = out / f"adlake-{version}.zip"
out.mkdir(parents=True, exist_ok=True)
files = sorted(
    p for p in Path("lib/adlake").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
)
partial = target.with_name(target.name + ".partial")
# Fixed timestamps and order: the same sources give the same bytes (a cluster cache hit).
with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in files:
        info = zipfile.ZipInfo(str(path.relative_to("lib")), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, path.read_bytes())
partial.replace(target)
print(target.resolve())
PY
