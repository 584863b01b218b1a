# Shared by scripts/test and scripts/sandbox-demo.

# Debian packages the sandbox needs: etcd-server and etcd-client (its simulated masters run the
# real etcd), openssh-server (every VM runs OpenSSH's sshd), nftables and iproute2 (its VPC
# network, NAT and firewall rules), python3-yaml (tests read kube-env with configure.sh's own
# PyYAML conversion), and kubectl (kubernetes-client: the tests read the kubeconfig kube-ha
# merges with the real `kubectl config view`). Installed only when a command is missing.
ensure_packages() {
  local missing=()
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v etcdctl >/dev/null || missing+=(etcd-client)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v nft >/dev/null || missing+=(nftables)
  command -v ip >/dev/null || missing+=(iproute2)
  python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
  command -v kubectl >/dev/null || missing+=(kubernetes-client)
  command -v curl >/dev/null || missing+=(curl)   # the tests ask VMs' metadata servers with it
  [ "${#missing[@]}" -eq 0 ] && return
  echo "installing ${missing[*]} (apt-get)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "${missing[@]}" >/dev/null; }
}

# The sandbox's VMs are hosts of their own (network namespaces, veth links, nftables rules), which
# needs root; say so up front instead of failing in the middle.
ensure_root() {
  [ "$(id -u)" -eq 0 ] && return
  echo "error: the sandbox's VMs need root (network namespaces, veth links, nftables): run this as root, e.g. sudo -E bash $0" >&2
  exit 2
}
