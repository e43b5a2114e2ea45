# Shared by scripts/test (and scripts/bench): a private containerd with its CRI plugin, for the
# tests that lay pods out over CRI as the kubelet does. Source it after node-env.sh (it uses
# its SUDO, node_env_apt_install, node_env_add_cleanup and the images of node_env_images),
# then call, in order:
#
#   cri_env_packages         install containerd, runc, containernetworking-plugins (and curl)
#   cri_env_daemon PREFIX    start a private containerd under /tmp/PREFIX.XXXXXX, inside a network
#                            namespace of its own; stopped, and everything it left removed, on exit
#   cri_env_images           import the Docker test images into containerd's k8s.io namespace
#
# Never the system containerd and nothing under /run/containerd: own root, state, sockets,
# runc root, CNI config and IPAM store, all under the one directory. Its pods get real addresses
# from the CNI bridge plugin on 198.51.100.0/24 (a documentation range; CRI_POD_SUBNET) in that
# network namespace: no gateway, no masquerade, no link to the host network, nothing leaves it.
#
# Exports: CONTAINER_RUNTIME_ENDPOINT (unix:// socket of the CRI), PDC_TEST_CRI_NETNS (the
# network namespace containerd and its CNI bridge live in), PDC_TEST_CRI_PAUSE_IMAGE and
# PDC_TEST_CRI_APP_IMAGE (the test images as containerd names them).
#
# The caller defines log() and die() and runs from the repository root.

CRI_CNI_BIN_DIR=/usr/lib/cni
# The pods' network: a documentation range (RFC 5737), never routed anywhere. A caller may set
# CRI_POD_SUBNET before sourcing this to another range that is never routed (scripts/bench:
# more pods than a /24 holds).
CRI_POD_SUBNET=${CRI_POD_SUBNET:-198.51.100.0/24}

cri_env_packages() {
    local missing=() p
    command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1 || missing+=(containerd)
    command -v containerd-shim-runc-v2 >/dev/null 2>&1 || missing+=(containerd)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    for p in bridge host-local loopback; do
        [ -x "$CRI_CNI_BIN_DIR/$p" ] || { missing+=(containernetworking-plugins); break; }
    done
    # curl (with HTTP/2) makes one raw CRI Version call to tell the CRI plugin answers.
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
    if [ "${#missing[@]}" -gt 0 ]; then
        # shellcheck disable=SC2207
        missing=($(printf '%s\n' "${missing[@]}" | sort -u))
        node_env_apt_install "${missing[@]}"
    fi
}

# How containerd (and the kubelet) spell an image reference: docker.io/ and library/ added.
cri_image_name() {
    local name=$1 first=${1%%/*}
    if [ "$first" = "$name" ]; then
        name="docker.io/library/$name"
    elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
        name="docker.io/$name"
    fi
    case ${name##*/} in
    *:* | *@*) ;;
    *) name="$name:latest" ;;
    esac
    printf '%s\n' "$name"
}

CRI_DIR=""
CRI_PID=""
CRI_NETNS=""
CRI_SOCK=""

cri_ctr() { "${SUDO[@]}" ctr --address "$CRI_SOCK" --namespace k8s.io "$@"; }

# One unary CRI call over the socket with curl: $1 method (e.g. runtime.v1.RuntimeService/Version),
# $2 the request message as printf escapes. Prints the raw answer (gRPC frame) on success.
cri_raw_call() {
    local method=$1 msg=$2 len
    len=$(printf "$msg" | wc -c)
    { printf '\000\000\000\000'; printf "\\$(printf '%03o' "$len")"; printf "$msg"; } |
        "${SUDO[@]}" curl -sS --max-time 5 --http2-prior-knowledge --unix-socket "$CRI_SOCK" \
            -H 'content-type: application/grpc' -H 'te: trailers' \
            --data-binary @- "http://localhost/$method" 2>/dev/null
}

# Run by sh in containerd's own mount namespace before it execs containerd ($1: CRI_DIR, then
# the command). containerd 1.6 and its CNI library write to two host paths whatever the
# configuration says: shim sockets under /run/containerd/s and the CNI result cache under
# /var/lib/cni. Here both are directories of ours: bound over the host's when it has one,
# else the parent is shadowed by a tmpfs holding symlinks to the host's entries plus ours.
# Mounts made here never reach the host (propagation: slave) and go with the namespace.
# shellcheck disable=SC2016
CRI_NS_INIT='
set -eu
d=$1
shift
private_dir() { # $1 parent, $2 name, $3 our directory
    mkdir -p "$3"
    if [ -d "$1/$2" ]; then
        mount --bind "$3" "$1/$2"
        return
    fi
    mkdir -p "$3.host"
    mount --rbind "$1" "$3.host"
    mount -t tmpfs -o mode=0755 tmpfs "$1"
    for e in "$3.host"/* "$3.host"/.[!.]*; do
        if [ -e "$e" ] || [ -L "$e" ]; then ln -s "$e" "$1/${e##*/}"; fi
    done
    ln -s "$3" "$1/$2"
}
private_dir /run containerd "$d/run"
private_dir /var/lib cni "$d/cni/cache"
exec "$@"
'

cri_env_cleanup() {
    [ -n "$CRI_DIR" ] || return 0
    local parents=() ids id path
    if [ -n "$CRI_PID" ] && kill -0 "$CRI_PID" 2>/dev/null; then
        log "stopping private containerd (pid $CRI_PID)"
        # The pod cgroups (<parent>/<id>) of what is left (tests remove their sandboxes,
        # unless PDC_TEST_KEEP): runc removes each container's, the pod-level parent is the
        # kubelet's job on a node, so it is removed at the end here.
        for id in $(cri_ctr containers ls -q 2>/dev/null || true); do
            path=$(cri_ctr containers info "$id" 2>/dev/null |
                sed -n 's/.*"cgroupsPath": *"\([^"]*\)".*/\1/p' | head -n 1)
            [ -z "$path" ] || parents+=("${path%/*}")
        done
        ids=$(cri_ctr tasks ls -q 2>/dev/null || true)
        for id in $ids; do cri_ctr tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
        kill -TERM "$CRI_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$CRI_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CRI_PID" 2>/dev/null || true
        wait "$CRI_PID" 2>/dev/null || true
    fi
    CRI_PID=""
    # Shims outlive containerd: kill the ones serving this instance (their -address is ours).
    local pid
    for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CRI_SOCK" 2>/dev/null || true); do
        "${SUDO[@]}" kill -KILL "$pid" 2>/dev/null || true
    done
    # Whatever container processes are left (a shim killed before its container): runc knows
    # them by its root, and removes their cgroups too.
    local root
    for root in "$CRI_DIR"/runc/*/; do
        [ -d "$root" ] || continue
        for id in $("${SUDO[@]}" runc --root "$root" list -q 2>/dev/null || true); do
            "${SUDO[@]}" runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    local tree parent
    for parent in $(printf '%s\n' "${parents[@]}" | sort -u); do
        for tree in /sys/fs/cgroup /sys/fs/cgroup/*; do
            [ ! -d "$tree$parent" ] || "${SUDO[@]}" rmdir "$tree$parent" 2>/dev/null || true
        done
    done
    # Mounts were made in containerd's own mount namespace and went with it; unmount anything
    # under the directory that still shows here anyway, deepest first.
    awk -v d="$CRI_DIR" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do "${SUDO[@]}" umount -l "$m" 2>/dev/null || true; done
    if [ -n "$CRI_NETNS" ]; then
        "${SUDO[@]}" ip netns delete "$CRI_NETNS" 2>/dev/null || true
        CRI_NETNS=""
    fi
    if [ -n "${PDC_TEST_KEEP:-}" ]; then
        log "PDC_TEST_KEEP set: leaving $CRI_DIR"
    else
        "${SUDO[@]}" rm -rf "$CRI_DIR" 2>/dev/null || true
    fi
    CRI_DIR=""
}

cri_env_daemon() {
    local prefix=$1
    node_env_add_cleanup cri_env_cleanup
    # A short base keeps the unix socket paths well under the 108-byte limit.
    CRI_DIR=$(mktemp -d "/tmp/$prefix.XXXXXX")
    CRI_SOCK="$CRI_DIR/containerd.sock"
    CRI_NETNS="pdc-cri-$$"
    local pause_image
    pause_image=$(cri_image_name "${PDC_TEST_PAUSE_IMAGE:-pdc-test/pause:1}")
    mkdir -p "$CRI_DIR"/{root,state,runc,run,tmp,cni/net.d,cni/ipam,cni/cache}

    "${SUDO[@]}" ip netns add "$CRI_NETNS" || die "cannot create network namespace $CRI_NETNS"
    "${SUDO[@]}" ip -n "$CRI_NETNS" link set lo up

    # The CNI bridge lives in containerd's namespace; no gateway, no route, no masquerade.
    cat >"$CRI_DIR/cni/net.d/10-pdc-test.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "pdc-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "pdc0",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$CRI_POD_SUBNET"}]],
        "routes": [],
        "dataDir": "$CRI_DIR/cni/ipam"
      }
    }
  ]
}
EOF

    cat >"$CRI_DIR/config.toml" <<EOF
version = 2
root = "$CRI_DIR/root"
state = "$CRI_DIR/state"
temp = "$CRI_DIR/tmp"
oom_score = 0
# Nothing that would use or clash with the host's own directories or a system containerd.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$CRI_SOCK"

[ttrpc]
  address = "$CRI_SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

# The legacy v1 runtime cannot be disabled (the tasks service needs it); CRI uses runc v2.
[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "$CRI_DIR/runc-v1"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  disable_apparmor = true
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CRI_DIR/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CRI_CNI_BIN_DIR"
    conf_dir = "$CRI_DIR/cni/net.d"
    max_conf_num = 1
EOF

    export CONTAINER_RUNTIME_ENDPOINT="unix://$CRI_SOCK"
    export PDC_TEST_CRI_NETNS="$CRI_NETNS"
    log "starting a private containerd at $CONTAINER_RUNTIME_ENDPOINT in network namespace $CRI_NETNS (log: $CRI_DIR/containerd.log)"
    # Its own network namespace (nsenter, not `ip netns exec`, which would remount /sys and hide
    # the cgroup hierarchies) and its own mount namespace (see cri_ns_init).
    "${SUDO[@]}" nsenter --net="/run/netns/$CRI_NETNS" \
        unshare --mount --propagation slave \
        sh -c "$CRI_NS_INIT" cri-env "$CRI_DIR" \
        containerd --config "$CRI_DIR/config.toml" \
        </dev/null >"$CRI_DIR/containerd.log" 2>&1 &
    CRI_PID=$!
    local i answer
    for i in $(seq 1 150); do
        if "${SUDO[@]}" ctr --address "$CRI_SOCK" version >/dev/null 2>&1 </dev/null; then
            # A CRI Version call (VersionRequest{version: "v1"}): the CRI plugin itself answers.
            answer=$(cri_raw_call runtime.v1.RuntimeService/Version '\012\002v1' | tr -c '[:print:]' ' ' || true)
            case $answer in *containerd*) break ;; esac
        fi
        if ! kill -0 "$CRI_PID" 2>/dev/null; then
            tail -n 40 "$CRI_DIR/containerd.log" >&2 || true
            CRI_PID=""
            die "containerd exited before answering"
        fi
        [ "$i" -lt 150 ] || { tail -n 40 "$CRI_DIR/containerd.log" >&2; die "containerd's CRI did not answer within 30s"; }
        sleep 0.2
    done
    if grep -q 'failed to load plugin io.containerd.grpc.v1.cri' "$CRI_DIR/containerd.log"; then
        tail -n 40 "$CRI_DIR/containerd.log" >&2
        die "containerd's CRI plugin did not load"
    fi
    log "private containerd is up: $(printf '%s' "$answer" | tr -s ' ')"
}

# Imports the Docker test images (node_env_images built them) into containerd's k8s.io
# namespace, unpacked for the native snapshotter, and also names each by its manifest digest
# (repo@sha256:…), as a pulled image is: CRI's image_ref is then a repo digest.
cri_env_images() {
    export PDC_TEST_CRI_PAUSE_IMAGE PDC_TEST_CRI_APP_IMAGE
    PDC_TEST_CRI_PAUSE_IMAGE=$(cri_image_name "${PDC_TEST_PAUSE_IMAGE:-pdc-test/pause:1}")
    PDC_TEST_CRI_APP_IMAGE=$(cri_image_name "${PDC_TEST_APP_IMAGE:-pdc-test/app:1}")
    local docker_name cri_name digest
    for docker_name in "${PDC_TEST_PAUSE_IMAGE:-pdc-test/pause:1}" "${PDC_TEST_APP_IMAGE:-pdc-test/app:1}"; do
        cri_name=$(cri_image_name "$docker_name")
        if ! cri_ctr images ls -q 2>/dev/null | grep -qxF "$cri_name"; then
            log "importing image $docker_name into containerd as $cri_name"
            docker save "$docker_name" </dev/null |
                cri_ctr images import --snapshotter native - >/dev/null ||
                die "cannot import $docker_name into containerd"
        fi
        digest=$(cri_ctr images ls 2>/dev/null | awk -v n="$cri_name" '$1 == n { print $3 }')
        [ -n "$digest" ] || die "containerd does not list $cri_name after the import"
        cri_ctr images tag --force "$cri_name" "${cri_name%:*}@$digest" >/dev/null ||
            die "cannot tag $cri_name as ${cri_name%:*}@$digest"
    done
    log "CRI test images: $PDC_TEST_CRI_PAUSE_IMAGE, $PDC_TEST_CRI_APP_IMAGE"
}
