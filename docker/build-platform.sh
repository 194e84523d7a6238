#!/bin/sh
# Builds a Sprout platform image from Debian packages, with no registry.
# usage: build-platform.sh python|static [IMAGE_NAME]
# Needs: docker, and debootstrap for `python` (apt-get install debootstrap).
set -eu
platform="${1:?usage: build-platform.sh python|static [IMAGE]}"
image="${2:-sprout/platform-$platform}"
suite="${SPROUT_DEBIAN_SUITE:-bookworm}"
mirror="${SPROUT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d "${TMPDIR:-/tmp}/sprout-platform-$platform.XXXXXX")"
trap 'rm -rf "$work"' EXIT INT TERM
root="$work/rootfs"
mkdir -p "$root"

say() { echo "[platform $platform] $*"; }

case "$platform" in
python)
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 3; }
    say "debootstrap $suite (minbase + python3, pip, venv)"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        "$suite" "$root" "$mirror" | sed -u "s/^/[platform $platform] /"
    # Let a bundle's build step `pip install` into the image, as on any PaaS.
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    ;;
static)
    # A minimal root: busybox (for the boot/build shell) and CA certificates.
    say "fetching busybox-static"
    ( cd "$work" && apt-get download busybox-static >/dev/null 2>&1 ) || {
        apt-get update >/dev/null && ( cd "$work" && apt-get download busybox-static ); }
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"
    mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/app" "$root/usr/bin"
    cp "$work/bb/bin/busybox" "$root/bin/busybox"
    for tool in sh ls cat echo env mkdir rm cp mv chmod sleep wget tar gzip unzip sed grep true false; do
        ln -s busybox "$root/bin/$tool"
    done
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    chmod 1777 "$root/tmp"
    ;;
*)
    echo "unknown platform '$platform' (known: python, static)" >&2
    exit 2
    ;;
esac

mkdir -p "$root/app"
say "importing as $image"
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'WORKDIR /app' \
    --change "LABEL sprout.platform=$platform" \
    --change 'CMD ["/bin/sh"]' \
    - "$image" >/dev/null
say "done: $image"
