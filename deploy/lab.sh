#!/usr/bin/env bash
# The lab command: installs what is missing (PostgreSQL 15, build tools, etcdctl),
# builds the release binaries and starts a 3-node raftgres lab on this machine.
#   bash deploy/lab.sh [raftctl lab up options, e.g. --dir DIR --base-port 15432]
# Then: export PGPASSFILE=/tmp/raftgres-lab/pgpass; psql -h 127.0.0.1 -p 5432 -U postgres
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
echo "lab: building the release binaries (a few minutes the first time)"
cargo build --release --quiet --bins
install -d /usr/local/bin 2>/dev/null || true
if [ -w /usr/local/bin ]; then
    ln -sf "$PWD/target/release/raftctl" /usr/local/bin/raftctl
    ln -sf "$PWD/target/release/raftgres" /usr/local/bin/raftgres
    echo "lab: raftctl and raftgres are linked into /usr/local/bin"
fi
exec ./target/release/raftctl lab up "$@"
