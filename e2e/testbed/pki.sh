#!/usr/bin/env bash
# Generates the cluster's certificates and kubeconfigs with openssl: one CA,
# serving certificates for the apiserver and kubelet, a client certificate per
# component, and the service-account signing key. Existing files are kept.
source "$(dirname "$0")/lib.sh"

mkdir -p "$PKI"
cd "$PKI"
umask 077

if [[ ! -f ca.key ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=relevo-testbed-ca" 2>/dev/null
fi
[[ -f sa.key ]] || {
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
}

# cert NAME SUBJECT USAGE [SANS]: a key and a CA-signed certificate.
cert() {
  local name=$1 subject=$2 usage=$3 sans=${4:-}
  [[ -f $name.crt ]] && return 0
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out "$name.crt" -days 3650 -extfile "$ext" 2>/dev/null
  rm -f "$name.csr" "$ext"
}

cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP"
cert kubelet "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
cert admin "/O=system:masters/CN=relevo-admin" clientAuth
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert node "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
cert proxy "/CN=system:kube-proxy" clientAuth
cert provisioner "/O=system:masters/CN=relevo-local-provisioner" clientAuth

# kubeconfig NAME CERT: a kubeconfig for one identity against the apiserver.
kubeconfig() {
  local file=$TB_STATE/$1.kubeconfig cert=$2
  [[ -f $file ]] && return 0
  cat >"$file" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: relevo-testbed
  cluster:
    server: ${APISERVER_URL:-https://$NODE_IP:6443}
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 "$cert.crt")
    client-key-data: $(base64 -w0 "$cert.key")
contexts:
- name: relevo-testbed
  context: {cluster: relevo-testbed, user: $1}
current-context: relevo-testbed
KCFG
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kubelet node
kubeconfig proxy proxy
kubeconfig provisioner provisioner
