#!/bin/sh
# Builds a Sprout platform image from Debian packages, with no registry.
# usage: build-platform.sh python|static [IMAGE_NAME]
#        build-platform.sh postgres|mysql|redis [IMAGE_NAME]
#
# The second family are the resource images (sprout/resource-KIND): the python platform
# image (built first if missing) plus Debian's postgresql-15, mariadb-server (10.11) or
# redis-server (7) installed with apt, and resource-entrypoint.sh (next to this script) as
# the entrypoint.
#
# Needs only docker and the tools of any Linux (sh, coreutils, sed, awk, grep, tar, gzip): every
# other tool comes from Debian packages and runs in containers. With no image to start from:
#  1. The Docker daemon downloads the archive's package index and a few packages over HTTPS
#     (`ADD` in a `FROM scratch` build); their SHA256 sums are checked here against the index.
#  2. busybox-static's data member is cut out of its .deb (an `ar` archive) and imported as
#     a one-binary image (the daemon unpacks its xz: Docker's packages bring xz-utils).
#  3. static: busybox and the CA bundle of ca-certificates, assembled in a busybox container.
#     python: debootstrap (with perl and gpgv from the same packages, checking the archive's
#     signatures against debian-archive-keyring) runs its first stage in a busybox container;
#     that tree is imported and its second stage runs in a container of it (the container
#     is the chroot).
set -eu
platform="${1:?usage: build-platform.sh python|static|postgres|mysql|redis [IMAGE]}"
case "$platform" in
postgres | mysql | redis) family=resource ;;
*) family=platform ;;
esac
image="${2:-sprout/$family-$platform}"
suite="${SPROUT_DEBIAN_SUITE:-bookworm}"
mirror="${SPROUT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The first packages are trusted through TLS, so fetch them over HTTPS from Debian's CDN;
# debootstrap may use plain HTTP, as it checks the Release signature with gpgv.
seed_mirror="$(printf '%s' "$mirror" | sed 's#^http://deb\.debian\.org/#https://deb.debian.org/#')"

case "$platform" in
postgres | mysql | redis) seed_pkgs="" ;;
# debootstrap needs perl (to read the index) and gpgv; it runs much faster under dash with
# GNU grep (busybox's shell would take its own grep whatever the PATH).
python)
    seed_pkgs="busybox-static debootstrap perl-base libc6 libcrypt1 gpgv libgcrypt20 libgpg-error0
        zlib1g libbz2-1.0 debian-archive-keyring dash grep libpcre2-8-0"
    ;;
static) seed_pkgs="busybox-static ca-certificates" ;;
*)
    echo "unknown platform '$platform' (known: python, static, postgres, mysql, redis)" >&2
    exit 2
    ;;
esac
# shellcheck disable=SC2086 # one line, single spaces
seed_pkgs="$(echo $seed_pkgs)"

say() { echo "[$family $platform] $*"; }
fail() { echo "[$family $platform] error: $*" >&2; exit 1; }
# Prefixes each line as it comes (a shell loop, so nothing waits in a pipe buffer).
prefix() { while IFS= read -r line; do printf '[%s %s] %s\n' "$family" "$platform" "$line"; done; }

work="$(mktemp -d "${TMPDIR:-/tmp}/sprout-platform-$platform.XXXXXX")"
# Temporary images and containers carry a unique name, so parallel builds do not collide.
tmp="sprout-build-$platform-$$-$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
cleanup() {
    docker rm -f "$tmp-fetch" "$tmp-stage2" "$tmp-resource" >/dev/null 2>&1 || true
    docker rmi -f "$tmp:fetch" "$tmp:busybox" "$tmp:stage1" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$family" = resource ]; then
    base="${SPROUT_RESOURCE_BASE:-sprout/platform-python}"
    entrypoint="$(dirname "$0")/resource-entrypoint.sh"
    [ -f "$entrypoint" ] || fail "$entrypoint is missing"
    if ! docker image inspect "$base" >/dev/null 2>&1; then
        say "$base is missing: building it first"
        sh "$0" python "$base" || fail "building $base failed"
    fi
    case "$platform" in
    postgres) pkgs="postgresql-15" ;;
    mysql) pkgs="mariadb-server mariadb-client" ;;
    redis) pkgs="redis-server redis-tools" ;;
    esac
    # No service starts during the install (policy-rc.d), and postgresql-common creates no
    # cluster: the entrypoint initialises the data directory in the volume at first start.
    # shellcheck disable=SC2016 # expanded by the container's shell
    install='cat >/usr/local/bin/sprout-resource
        chmod 755 /usr/local/bin/sprout-resource
        printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/sprout.conf
        echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/sprout-build
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $1
        rm -f /usr/sbin/policy-rc.d /etc/dpkg/dpkg.cfg.d/sprout-build
        rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/lib/postgresql/15/main
        mkdir -p /data'
    say "installing $pkgs on $base"
    echo 0 >"$work/install"
    { docker run -i --name "$tmp-resource" "$base" /bin/sh -ec "$install" install "$pkgs" \
        <"$entrypoint" 2>&1 || echo "$?" >"$work/install"; } | prefix
    [ "$(cat "$work/install")" = 0 ] || fail "installing $pkgs failed"
    say "committing as $image"
    docker commit \
        --change "ENV SPROUT_RESOURCE_KIND=$platform" \
        --change 'WORKDIR /data' \
        --change "LABEL sprout.resource=$platform" \
        --change 'ENTRYPOINT ["/usr/local/bin/sprout-resource"]' \
        --change 'CMD ["run"]' \
        "$tmp-resource" "$image" >/dev/null || fail "docker commit of $image failed"
    say "done: $image"
    exit 0
fi

server_arch="$(docker version --format '{{.Server.Arch}}')" || fail "cannot reach the Docker engine"
case "$server_arch" in
amd64 | arm64 | s390x | riscv64 | mips64le) arch="$server_arch" ;;
386) arch=i386 ;;
ppc64le) arch=ppc64el ;;
arm) arch=armhf ;;
*) fail "no Debian architecture for the engine's '$server_arch'" ;;
esac

# fetch DIR NAME=URL...: the daemon downloads each URL (over HTTPS when the URL says so) into
# an image; its files are then copied out into DIR.
fetch() {
    dir="$1"
    shift
    for pair in "$@"; do echo "ADD ${pair#*=} /f/${pair%%=*}"; done >"$work/Dockerfile"
    # Three tries: a first start should not fail for one dropped connection.
    for try in 1 2 3; do
        # Its errors are shown only on failure: the legacy builder warns about itself.
        # The label first: builds of the same files would otherwise share their image (the
        # builder's cache), and one build's clean-up would delete another's download.
        { printf 'FROM scratch\nLABEL sprout.build=%s\n' "$tmp" && cat "$work/Dockerfile"; } |
            docker build -q -t "$tmp:fetch" - >/dev/null 2>"$work/build.err" && break
        if [ "$try" = 3 ]; then
            cat "$work/build.err" >&2
            fail "downloading from $seed_mirror failed"
        fi
        say "download failed, trying again"
        sleep 5
    done
    docker create --name "$tmp-fetch" "$tmp:fetch" /none >/dev/null
    mkdir -p "$dir"
    docker cp "$tmp-fetch:/f/." - | tar -C "$dir" -xf -
    docker rm -f "$tmp-fetch" >/dev/null
    docker rmi -f "$tmp:fetch" >/dev/null
}

# ar_member DEB PREFIX: writes the first member of the ar archive DEB whose name starts with
# PREFIX (a .deb's data.tar.*) to stdout. Header: name[16] date[12] uid[6] gid[6] mode[8]
# size[10] magic[2]; members start at even offsets.
ar_member() {
    size_total="$(wc -c <"$1")"
    off=8
    while [ "$off" -lt "$size_total" ]; do
        header="$(dd if="$1" bs=1 skip="$off" count=60 2>/dev/null)"
        name="$(printf '%s' "$header" | cut -c1-16 | sed 's#[ /]*$##')"
        size="$(printf '%s' "$header" | cut -c49-58 | tr -d ' ')"
        off=$((off + 60))
        case "$name" in
        "$2"*)
            tail -c +"$((off + 1))" "$1" | head -c "$size"
            return 0
            ;;
        esac
        off=$((off + size + size % 2))
    done
    return 1
}

# stream PRODUCER IMAGE IMPORTER: imports the tar PRODUCER writes as IMAGE with IMPORTER
# (docker import and its changes); fails, leaving no image, if either side fails.
stream() {
    echo 0 >"$work/produced"
    { "$1" || echo "$?" >"$work/produced"; } | "$3" "$2" >/dev/null || {
        docker rmi -f "$2" >/dev/null 2>&1 || true
        fail "docker import of $2 failed"
    }
    produced="$(cat "$work/produced")"
    if [ "$produced" != 0 ]; then
        docker rmi -f "$2" >/dev/null 2>&1 || true
        fail "building $2 failed (exit code $produced)"
    fi
}
import_plain() { docker import - "$1"; }
import_platform() {
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PYTHONUNBUFFERED=1' \
        --change 'WORKDIR /app' \
        --change "LABEL sprout.platform=$platform" \
        --change 'CMD ["/bin/sh"]' \
        - "$1"
}

say "fetching the $suite package index ($arch) from $seed_mirror"
fetch "$work" "Packages.gz=$seed_mirror/dists/$suite/main/binary-$arch/Packages.gz"
# "name filename sha256" of each wanted package (the first stanza of each name).
gzip -dc "$work/Packages.gz" | awk -v want=" $seed_pkgs " '
    function flush() {
        if (p != "" && index(want, " " p " ") && !(p in seen)) { seen[p] = 1; print p, f, s }
        p = ""; f = ""; s = ""
    }
    /^Package: / { p = $2 } /^Filename: / { f = $2 } /^SHA256: / { s = $2 }
    /^$/ { flush() } END { flush() }' >"$work/wanted"
rm -f "$work/Packages.gz"
for pkg in $seed_pkgs; do
    grep -q "^$pkg " "$work/wanted" || fail "$pkg is not in $suite/main for $arch"
done

say "fetching $seed_pkgs"
# shellcheck disable=SC2046 # one NAME=URL word per package
fetch "$work/debs" $(awk -v m="$seed_mirror" '{ print $1 ".deb=" m "/" $2 }' "$work/wanted")
awk '{ print $3 "  " $1 ".deb" }' "$work/wanted" >"$work/debs.sha256"
(cd "$work/debs" && sha256sum -c --quiet ../debs.sha256) ||
    fail "a package's SHA256 does not match the index"

ar_member "$work/debs/busybox-static.deb" data.tar >"$work/busybox-data" ||
    fail "no data member in busybox-static.deb"
docker import "$work/busybox-data" "$tmp:busybox" >/dev/null ||
    fail "the Docker engine could not unpack busybox-static (it needs xz: install xz-utils)"

# The debs go into the busybox container on its stdin; everything runs there with busybox.
send_debs() { tar -C "$work" -cf - debs; }

case "$platform" in
python)
    # shellcheck disable=SC2016 # expanded by the container's shell
    stage1_script='set -eu -o pipefail
        /bin/busybox mkdir -p /usr/bin /usr/sbin /sbin /tmp
        /bin/busybox tar -C / -xf -
        /bin/busybox rm /debs/busybox-static.deb
        for deb in /debs/*.deb; do /bin/busybox dpkg-deb -x "$deb" /; done
        /bin/busybox --install -s
        export PATH=/usr/sbin:/usr/bin:/sbin:/bin
        dash /usr/sbin/debootstrap --foreign --arch="$1" --extractor=ar --variant=minbase \
            --include=python3,python3-pip,python3-venv,ca-certificates \
            --keyring=/usr/share/keyrings/debian-archive-keyring.gpg --force-check-gpg \
            "$2" /target "$3" 2>&1 |
            while IFS= read -r line; do printf "[platform python] %s\n" "$line"; done >&2
        # dpkg without fsync for the second stage (undone at its end): much faster on a
        # copy-on-write root, and a build that stops half-way is thrown away anyway.
        echo force-unsafe-io >/target/etc/dpkg/dpkg.cfg.d/sprout-build
        tar -C /target -cf - .'
    stage1() {
        # /target is a volume: debootstrap insists on a mount that allows device nodes, which
        # the container's root may not (fuse-overlayfs mounts it nodev).
        send_debs | docker run -i --rm -v /target "$tmp:busybox" /bin/busybox sh -c "$stage1_script" \
            stage1 "$arch" "$suite" "$mirror"
    }
    say "debootstrap $suite, first stage (minbase + python3, pip, venv)"
    stream stage1 "$tmp:stage1" import_plain

    say "debootstrap, second stage"
    # Let a bundle's build step `pip install` into the image, as on any PaaS.
    finish='/debootstrap/debootstrap --second-stage
        rm /etc/dpkg/dpkg.cfg.d/sprout-build
        rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
        rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
        mkdir -p /app'
    echo 0 >"$work/stage2"
    # `container=lxc` makes debootstrap skip its device-node test of / (the container's root
    # may be nodev, see above); the container already has the /dev, /proc and /sys it needs.
    { docker run --name "$tmp-stage2" -e container=lxc "$tmp:stage1" /bin/sh -ec "$finish" 2>&1 ||
        echo "$?" >"$work/stage2"; } | prefix
    [ "$(cat "$work/stage2")" = 0 ] || fail "debootstrap's second stage failed"
    export_stage2() { docker export "$tmp-stage2"; }
    say "importing as $image"
    stream export_stage2 "$image" import_platform
    ;;
static)
    # A minimal root: busybox (for the boot/build shell) and CA certificates.
    static_script='set -eu
        /bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
        /bin/busybox --install -s
        tar -C / -xf -
        mkdir -p /r/bin /r/etc/ssl/certs /r/tmp /r/app /r/usr/bin /ca
        cp /bin/busybox /r/bin/busybox
        for tool in sh ls cat echo env mkdir rm cp mv chmod sleep wget tar gzip unzip sed grep true false; do
            ln -s busybox "/r/bin/$tool"
        done
        # The bundle update-ca-certificates would write: every certificate, one file.
        dpkg-deb -x /debs/ca-certificates.deb /ca
        cat /ca/usr/share/ca-certificates/mozilla/*.crt >/r/etc/ssl/certs/ca-certificates.crt
        printf "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n" >/r/etc/passwd
        printf "root:x:0:\nnogroup:x:65534:\n" >/r/etc/group
        chmod 1777 /r/tmp
        tar -C /r -cf - .'
    assemble() { send_debs | docker run -i --rm "$tmp:busybox" /bin/busybox sh -c "$static_script"; }
    say "assembling busybox and CA certificates; importing as $image"
    stream assemble "$image" import_platform
    ;;
esac
say "done: $image"
