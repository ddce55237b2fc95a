#!/usr/bin/env bash
# Starts a throwaway S3-compatible server (s3s-fs, an S3 server on a folder, from the Rust
# registry) for the tests, with one bucket, `surplus-test`, and prints the environment that
# points clients at it:
#   eval "$(scripts/s3.sh start DIR)"   -> AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                                          AWS_REGION and SURPLUS_TEST_S3_ROOT (the bucket's folder's parent)
#   scripts/s3.sh stop DIR
# Builds s3s-fs once (`cargo install`, about 3 minutes on 2 cores) and reuses it afterwards.
set -euo pipefail

dir=${2:?usage: s3.sh start|stop DIR}
version=0.11.0

case "$1" in
start)
  if ! command -v s3s-fs >/dev/null || ! s3s-fs --version 2>/dev/null | grep -q "$version"; then
    echo "building s3s-fs $version (once)..." >&2
    cargo install s3s-fs --version "$version" --features binary --locked --quiet >&2
  fi
  mkdir -p "$dir/data/surplus-test"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((30000 + RANDOM % 20000)))
  secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  s3s-fs --host 127.0.0.1 --port "$port" --access-key surplus-test --secret-key "$secret" \
    "$dir/data" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=surplus-test
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export SURPLUS_TEST_S3_ROOT=$dir/data
ENV
      exit 0
    fi
    sleep 0.1
  done
  echo "s3s-fs did not start:" >&2
  cat "$dir/log" >&2
  exit 1
  ;;
stop)
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
  ;;
*)
  echo "usage: s3.sh start|stop DIR" >&2
  exit 2
  ;;
esac
