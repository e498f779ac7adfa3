#!/bin/sh
# Download Debian's i386 kernel (the version linux-image-686 depends on today)
# and busybox-static:i386 into build/debs/, and extract the kernel as
# build/vmlinuz and busybox as build/busybox. Idempotent: a package already
# downloaded is not fetched again. Needs root (dpkg --add-architecture) the
# first time only.
set -eu
BUILD=${1:-build}
DEBS=$BUILD/debs
mkdir -p "$DEBS"

if ! dpkg --print-foreign-architectures | grep -qx i386; then
    echo "make linux: adding the i386 architecture to dpkg (for Debian's i386 kernel and busybox)"
    dpkg --add-architecture i386
    apt-get update -qq || echo "make linux: apt-get update reported errors; going on with the indexes it got"
fi
if ! apt-cache show linux-image-686:i386 >/dev/null 2>&1; then
    apt-get update -qq || echo "make linux: apt-get update reported errors; going on with the indexes it got"
fi

# linux-image-686 is a metapackage: it depends on the current ABI's image,
# e.g. linux-image-6.1.0-50-686.
image=$(apt-cache depends linux-image-686:i386 | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-686\).*/\1/p' | head -n1)
if [ -z "$image" ]; then
    echo "make linux: cannot resolve the kernel package linux-image-686 depends on (apt-cache depends linux-image-686:i386)" >&2
    exit 1
fi

fetch() {   # fetch PACKAGE: download its .deb into $DEBS unless it is there
    pkg=$1
    name=${pkg%%:*}
    version=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
    file_version=$(echo "$version" | sed 's/:/%3a/')
    deb="$DEBS/${name}_${file_version}_i386.deb"
    if [ ! -s "$deb" ]; then
        echo "make linux: downloading $pkg $version" >&2
        (cd "$DEBS" && apt-get download -q "$pkg=$version" >/dev/null 2>&1) || {
            echo "make linux: apt-get download $pkg=$version failed" >&2; exit 1; }
    fi
    echo "$deb"
}

kernel_deb=$(fetch "$image:i386")
busybox_deb=$(fetch busybox-static:i386)

if [ ! -s "$BUILD/vmlinuz" ] || [ "$kernel_deb" -nt "$BUILD/vmlinuz" ]; then
    rm -rf "$BUILD/kernel-pkg"
    dpkg-deb -x "$kernel_deb" "$BUILD/kernel-pkg"
    cp "$BUILD"/kernel-pkg/boot/vmlinuz-* "$BUILD/vmlinuz.tmp"
    cp "$BUILD"/kernel-pkg/boot/config-* "$BUILD/config"
    ls "$BUILD"/kernel-pkg/boot/vmlinuz-* | sed 's,.*/vmlinuz-,,' > "$BUILD/kernel-release"
    rm -rf "$BUILD/kernel-pkg"          # the modules are not needed: everything we use is built in
    mv "$BUILD/vmlinuz.tmp" "$BUILD/vmlinuz"
fi
if [ ! -s "$BUILD/busybox" ] || [ "$busybox_deb" -nt "$BUILD/busybox" ]; then
    rm -rf "$BUILD/busybox-pkg"
    dpkg-deb -x "$busybox_deb" "$BUILD/busybox-pkg"
    cp "$BUILD/busybox-pkg/bin/busybox" "$BUILD/busybox.tmp"
    rm -rf "$BUILD/busybox-pkg"
    mv "$BUILD/busybox.tmp" "$BUILD/busybox"
fi
