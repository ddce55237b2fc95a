# Shared by scripts/demo and scripts/test: checks the toolchain and installs the system packages a
# fresh Debian or Ubuntu machine lacks. Sourced, not run.

# Starts a stage of a run, with the seconds since the run began: the log then shows where a run's
# time goes. Scripts that scripts/test runs count from its start.
: "${SURPLUS_RUN_STARTED:=$(date +%s)}"
export SURPLUS_RUN_STARTED
stage() {
  echo "== [$(($(date +%s) - SURPLUS_RUN_STARTED)) s] $*"
}

# Installs Debian packages that are missing, as root through apt, or says exactly what to install.
need_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "missing system packages: ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  local sudo=""
  [ "$(id -u)" != 0 ] && sudo="sudo"
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
}

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
    exit 1
  fi
fi

# A C compiler and linker for Rust, curl for the scripts' health checks.
if command -v dpkg-query >/dev/null; then
  need_packages build-essential pkg-config curl
fi
