#!/usr/bin/env bash
# Creates (once) and activates the project's virtual environment.
# The environment lives outside the clone, in a cache folder keyed by a hash of requirements.txt,
# so a fresh clone reuses it and a change of requirements builds a new one.
#   STCN_ENV_CACHE   cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/stcn-env)
# Source it:  source scripts/env.sh
_stcn_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_stcn_hash="$(sha256sum "$_stcn_root/requirements.txt" | cut -c1-16)"
_stcn_cache="${STCN_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stcn-env}"
_stcn_venv="$_stcn_cache/venv-$_stcn_hash"
if [ ! -f "$_stcn_venv/.complete" ]; then
    echo "[env] building $_stcn_venv from requirements.txt (first run downloads ~3 GB of PyTorch)"
    rm -rf "$_stcn_venv"
    mkdir -p "$_stcn_cache"
    python3 -m venv "$_stcn_venv" || return 1 2>/dev/null || exit 1
    "$_stcn_venv/bin/python" -m pip install --upgrade --quiet pip || return 1 2>/dev/null || exit 1
    "$_stcn_venv/bin/python" -m pip install --quiet -r "$_stcn_root/requirements.txt" \
        || { echo "[env] pip install failed; nothing cached" >&2; rm -rf "$_stcn_venv"; return 1 2>/dev/null || exit 1; }
    touch "$_stcn_venv/.complete"
fi
# shellcheck disable=SC1091
source "$_stcn_venv/bin/activate"
