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

# The sandbox serves the API stand-in on <ip>:443 like a master; as non-root that needs the
# kernel to allow unprivileged binds below 1024.
ensure_low_ports() {
  [ "$(id -u)" -eq 0 ] && return
  local start
  start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo 0)
  if [ "$start" -gt 443 ]; then
    echo "allowing unprivileged binds to port 443 (sysctl net.ipv4.ip_unprivileged_port_start=443)" >&2
    sudo sysctl -q -w net.ipv4.ip_unprivileged_port_start=443
  fi
}
