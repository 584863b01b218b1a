# Shared by scripts/test and scripts/sandbox-demo.

# etcd-server and etcd-client (Debian): the sandbox's simulated masters run the real etcd.
ensure_etcd() {
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
    return
  fi
  echo "installing etcd-server etcd-client (apt-get)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y etcd-server etcd-client >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y etcd-server etcd-client >/dev/null; }
}
