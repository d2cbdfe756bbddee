# shellcheck shell=bash
# Helpers shared by scripts/run.sh and scripts/test.sh (sourced, not run).
# Callers cd to the repository root before sourcing this file.

# Debian keeps nginx in /usr/sbin, which is not on an ordinary user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Colour only when a person is reading.
if [[ -t 2 ]]; then _b=$'\033[1m' _y=$'\033[33m' _r=$'\033[31m' _n=$'\033[0m'; else _b="" _y="" _r="" _n=""; fi
log() { printf '%s==> %s%s\n' "$_b" "$*" "$_n" >&2; }
warn() { printf '%swarning:%s %s\n' "$_y" "$_n" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$_r" "$_n" "$*" >&2
  exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# have_deb PACKAGE [BINARY]: the binary is on PATH, or dpkg says the package is installed.
have_deb() {
  local pkg=$1 bin=${2:-}
  if [[ -n $bin ]] && command -v "$bin" >/dev/null 2>&1; then
    return 0
  fi
  command -v dpkg-query >/dev/null 2>&1 &&
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]]
}

# ensure_debs required|optional PACKAGE[:BINARY]...
# Installs the missing packages when running as root; otherwise a required package
# that is missing stops the script, an optional one only earns a warning.
ensure_debs() {
  local mode=$1 spec pkg bin
  shift
  local missing=()
  for spec in "$@"; do
    pkg=${spec%%:*}
    bin=${spec#*:}
    [[ $bin == "$spec" ]] && bin=""
    have_deb "$pkg" "$bin" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0

  if is_root && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    if apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
      return 0
    fi
    [[ $mode == required ]] && die "could not install: ${missing[*]}"
    warn "could not install: ${missing[*]} (the tests that need them will skip)"
  elif [[ $mode == required ]]; then
    die "missing packages: ${missing[*]}. Install them (as root):
    apt-get install -y --no-install-recommends ${missing[*]}
then run this again."
  else
    warn "missing packages: ${missing[*]} (not root, so not installing; the tests that need them will skip)"
  fi
}

# ensure_venv [EXTRAS]: .venv exists and holds this project installed editable (with EXTRAS).
# pip only runs when pyproject.toml is newer than the stamp that the last install left,
# so a second start costs nothing.
ensure_venv() {
  local extras=${1:-} python=${MOC_PYTHON:-python3}
  local spec=. stamp=.venv/.moc-installed
  if [[ -n $extras ]]; then
    spec=".[$extras]"
    stamp+="-$extras"
  fi

  if [[ ! -x .venv/bin/python ]]; then
    command -v "$python" >/dev/null 2>&1 || die "$python not found; MOC needs Python 3.11 or newer"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "MOC needs Python 3.11 or newer; $python is $("$python" -V 2>&1)"
    # Debian splits venv's pip bootstrap into its own package.
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      ensure_debs required python3-venv
    fi
    log "creating .venv"
    "$python" -m venv .venv
    rm -f .venv/.moc-installed*
  fi

  # An install with more extras satisfies one that asks for fewer (test,demo serves demo).
  local other have wanted covered extra
  for other in .venv/.moc-installed*; do
    [[ -f $other && ! pyproject.toml -nt $other ]] || continue
    have=,${other#.venv/.moc-installed}, && have=${have/,-/,},
    covered=yes
    IFS=, read -r -a wanted <<<"$extras"
    for extra in "${wanted[@]}"; do
      [[ $have == *",$extra,"* ]] || covered=no
    done
    [[ $covered == yes ]] && return 0
  done
  if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    log "installing MOC into .venv (pip install -e '$spec')"
    .venv/bin/python -m pip install --disable-pip-version-check --quiet -e "$spec"
    touch "$stamp"
  fi
}
