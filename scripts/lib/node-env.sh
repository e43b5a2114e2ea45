# Shared by scripts/test and scripts/bench: the node environment both need on a fresh Debian
# machine. Source it, then call, in order:
#
#   node_env_packages [package ...]   install docker.io, busybox-static, iproute2 (and these)
#   node_env_apt_install package ...  apt-get install (one apt-get update per run)
#   node_env_daemon PREFIX [dockerd flags ...]
#                                     use $DOCKER_HOST when it answers, else start a private
#                                     dockerd under /tmp/PREFIX.XXXXXX, stopped on exit
#   node_env_images                   the test images (pause, app) by `docker import`
#
# The caller defines log() and die() and runs from the repository root. Other environments
# (scripts/lib/cri-env.sh) register their own cleanup with node_env_add_cleanup: on exit every
# registered cleanup runs, the last registered first.

export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo -n)
fi

# A static busybox: the images hold nothing else, so a dynamic one would find no libc.
static_busybox() {
    local b
    for b in "${PDC_TEST_BUSYBOX:-}" /usr/bin/busybox /bin/busybox; do
        if [ -n "$b" ] && [ -x "$b" ] && ! { command -v ldd >/dev/null 2>&1 && ldd "$b" 2>/dev/null | grep -q '=>'; }; then
            echo "$b"
            return
        fi
    done
}

# apt-get install these packages, after one apt-get update per run.
NODE_ENV_APT_UPDATED=""
node_env_apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get to install them"
    log "installing $*"
    if [ -z "$NODE_ENV_APT_UPDATED" ]; then
        "${SUDO[@]}" apt-get update -qq </dev/null
        NODE_ENV_APT_UPDATED=1
    fi
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

node_env_packages() {
    local missing=("$@")
    command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || missing+=(docker.io)
    [ -n "$(static_busybox)" ] || missing+=(busybox-static)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
    [ "${#missing[@]}" -eq 0 ] || node_env_apt_install "${missing[@]}"
    BUSYBOX=$(static_busybox)
    [ -n "$BUSYBOX" ] || die "no static busybox found after installing busybox-static"
}

# Cleanups to run on exit, in registration order; node_env_on_exit runs them in reverse.
NODE_ENV_CLEANUPS=()
node_env_on_exit() {
    local rc=$? i
    trap - EXIT
    for ((i = ${#NODE_ENV_CLEANUPS[@]} - 1; i >= 0; i--)); do
        "${NODE_ENV_CLEANUPS[$i]}" || true
    done
    exit "$rc"
}
node_env_add_cleanup() {
    NODE_ENV_CLEANUPS+=("$1")
    trap node_env_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

DK_DIR=""
DOCKERD_PID=""
node_env_cleanup() {
    if [ -n "$DOCKERD_PID" ]; then
        log "stopping private dockerd (pid $DOCKERD_PID)"
        # Remove every container first so no shim or mount outlives the daemon.
        local ids
        ids=$(docker ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    if [ -n "$DK_DIR" ] && [ -d "$DK_DIR" ]; then
        # Unmount anything the daemon left under its directories, deepest first.
        awk -v d="$DK_DIR" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do "${SUDO[@]}" umount -l "$m" 2>/dev/null || true; done
        "${SUDO[@]}" rm -rf "$DK_DIR" 2>/dev/null || true
    fi
}

node_env_daemon() {
    local prefix=$1
    shift
    node_env_add_cleanup node_env_cleanup
    if [ -n "${DOCKER_HOST:-}" ] && docker version >/dev/null 2>&1 </dev/null; then
        log "using the docker daemon at $DOCKER_HOST"
        export DOCKER_HOST
        return
    fi
    [ -z "${DOCKER_HOST:-}" ] || log "DOCKER_HOST=$DOCKER_HOST does not answer; starting a private daemon"
    # A short base keeps the unix socket path well under the 108-byte limit.
    DK_DIR=$(mktemp -d "/tmp/$prefix.XXXXXX")
    printf '{}\n' >"$DK_DIR/daemon.json"
    export DOCKER_HOST="unix://$DK_DIR/docker.sock"
    log "starting a private dockerd at $DOCKER_HOST (log: $DK_DIR/dockerd.log)"
    "${SUDO[@]}" dockerd \
        --host "$DOCKER_HOST" \
        --config-file "$DK_DIR/daemon.json" \
        --data-root "$DK_DIR/data" \
        --exec-root "$DK_DIR/exec" \
        --pidfile "$DK_DIR/docker.pid" \
        --bridge=none --iptables=false --ip-masq=false \
        --storage-driver=vfs \
        "$@" \
        </dev/null >"$DK_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local i
    for i in $(seq 1 150); do
        if docker version >/dev/null 2>&1 </dev/null; then break; fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 40 "$DK_DIR/dockerd.log" >&2 || true
            DOCKERD_PID=""
            die "dockerd exited before answering"
        fi
        [ "$i" -lt 150 ] || { tail -n 40 "$DK_DIR/dockerd.log" >&2; die "dockerd did not answer within 30s"; }
        sleep 0.2
    done
    log "private dockerd is up"
}

make_rootfs() { # $1: directory to fill with a busybox userland
    local root=$1 applet
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/dev" "$root/proc" "$root/sys" "$root/var/run"
    cp "$BUSYBOX" "$root/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

build_image() { # $1: image name, $2: rootfs dir, rest: docker import --change options
    local name=$1 root=$2
    shift 2
    if docker image inspect "$name" >/dev/null 2>&1 </dev/null; then
        log "image $name already present"
        return
    fi
    log "building image $name"
    tar -C "$root" -cf - . | docker import "$@" - "$name" >/dev/null
}

node_env_images() {
    export PDC_TEST_PAUSE_IMAGE="${PDC_TEST_PAUSE_IMAGE:-pdc-test/pause:1}"
    export PDC_TEST_APP_IMAGE="${PDC_TEST_APP_IMAGE:-pdc-test/app:1}"
    local img_dir
    img_dir=$(mktemp -d /tmp/pdc-img.XXXXXX)
    make_rootfs "$img_dir/pause"
    # Like the real pause container: sleeps forever, exits 0 on SIGTERM/SIGINT.
    cat >"$img_dir/pause/pause" <<'PAUSE'
#!/bin/sh
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $!
done
PAUSE
    chmod 0755 "$img_dir/pause/pause"
    build_image "$PDC_TEST_PAUSE_IMAGE" "$img_dir/pause" -c 'ENTRYPOINT ["/pause"]'

    make_rootfs "$img_dir/app"
    # A stand-in for a control-plane binary, so static pods can run their real command line.
    mkdir -p "$img_dir/app/usr/local/bin"
    printf '#!/bin/sh\nexec sleep 86400\n' >"$img_dir/app/usr/local/bin/kube-scheduler"
    chmod 0755 "$img_dir/app/usr/local/bin/kube-scheduler"
    # An image with its own defaults (CMD, ENV, LABEL) that the collector must tell apart
    # from what the pod spec asked for.
    build_image "$PDC_TEST_APP_IMAGE" "$img_dir/app" \
        -c 'CMD ["sleep", "86400"]' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV IMAGE_DEFAULT=from-image' \
        -c 'LABEL org.opencontainers.image.vendor=pdc-test'
    rm -rf "$img_dir"
}
