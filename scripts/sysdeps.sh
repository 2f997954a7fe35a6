#!/usr/bin/env bash
# The system packages the test suite needs (sshd for the real-OpenSSH tier, iproute2 and
# util-linux for its network namespaces, gcc for the demo playbook, git for the Guix fixtures,
# shellcheck for the host-side scripts, dash and busybox to run them as a host's /bin/sh,
# bubblewrap for the guix test double's `guix shell --container`, gpg and ssh-keygen for
# signed evidence, diffoscope-minimal and dpkg-dev (and make) for "why it differs").
# Installs only what is missing, and only where it can (root with apt-get); elsewhere it says
# what is missing and the suite skips the tier that needs it (or fails, under
# REPRO_REQUIRE_NETNS=1, as in CI).
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v git >/dev/null 2>&1 || need+=(git)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v pkill >/dev/null 2>&1 || need+=(procps)
command -v gpg >/dev/null 2>&1 || need+=(gpg)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v dash >/dev/null 2>&1 || need+=(dash)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
# "why it differs": the real diffoscope on the controller; dpkg-buildpackage (and make, which
# runs debian/rules) for the tests' tiny Debian package
command -v diffoscope >/dev/null 2>&1 || need+=(diffoscope-minimal)
command -v dpkg-buildpackage >/dev/null 2>&1 || need+=(dpkg-dev)
command -v make >/dev/null 2>&1 || need+=(make)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
    mkdir -p /run/sshd
else
    echo "sysdeps: missing ${need[*]} (not root or no apt-get: not installed; tests that need them skip)" >&2
fi
