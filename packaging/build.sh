#!/usr/bin/env bash
# Builds what users install: the static binary (x86_64-unknown-linux-musl), the .deb and the
# .rpm in target/package/, and the container image sonde:<version> and sonde:latest when a
# Docker engine is reachable (DOCKER_HOST or the default socket).
#
# Usage: packaging/build.sh [--no-image]
# Tools: rustup's musl target and Debian's musl-tools (installed when missing), dpkg-deb,
# rpmbuild (Debian's `rpm` package).
set -euo pipefail
cd "$(dirname "$0")/.."

want_image=1
[ "${1:-}" = "--no-image" ] && want_image=0

TARGET=x86_64-unknown-linux-musl
OUT=target/package
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# Reproducible: the build date is the commit's date.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SONDE_COMMIT=$COMMIT

apt_install() {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v rpmbuild >/dev/null || missing+=(rpm)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

echo "== static binary ($TARGET)"
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$TARGET" -p sonde
BIN=target/$TARGET/release/sonde
"$BIN" version

rm -rf "$OUT"
mkdir -p "$OUT"

# One staged tree; the .deb and the .rpm differ only in where the unit and the environment
# file go on their distributions.
stage() { # stage DIR UNIT_DIR ENV_FILE
    local root=$1
    install -D -m 0755 "$BIN" "$root/usr/bin/sonde"
    install -D -m 0644 config/sonde.toml "$root/etc/sonde/sonde.toml"
    install -d -m 0755 "$root/etc/sonde/sonde.d"
    install -D -m 0644 packaging/default "$root/$3"
    install -D -m 0644 packaging/sonde.service "$root/$2/sonde.service"
    install -D -m 0644 README.md "$root/usr/share/doc/sonde/README.md"
    install -d -m 0755 "$root/usr/share/man/man1"
    gzip -9n < packaging/sonde.1 > "$root/usr/share/man/man1/sonde.1.gz"
    chmod 0644 "$root/usr/share/man/man1/sonde.1.gz"
}

echo "== .deb"
DEB_ROOT=$OUT/deb-root
stage "$DEB_ROOT" lib/systemd/system etc/default/sonde
install -m 0644 packaging/deb/copyright "$DEB_ROOT/usr/share/doc/sonde/copyright"
install -D -m 0644 packaging/deb/lintian-overrides "$DEB_ROOT/usr/share/lintian/overrides/sonde"
printf 'sonde (%s) unstable; urgency=medium\n\n  * Release %s (commit %s).\n\n -- The sonde developers <packaging@sonde.example.org>  %s\n' \
    "$VERSION" "$VERSION" "$COMMIT" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" \
    | gzip -9n > "$DEB_ROOT/usr/share/doc/sonde/changelog.gz"
install -d -m 0755 "$DEB_ROOT/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$DEB_ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE@/$size/" packaging/deb/control > "$DEB_ROOT/DEBIAN/control"
printf '/etc/default/sonde\n/etc/sonde/sonde.toml\n' > "$DEB_ROOT/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$DEB_ROOT/DEBIAN/"
(cd "$DEB_ROOT" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' \
    | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$DEB_ROOT/DEBIAN/md5sums"
find "$DEB_ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$DEB_ROOT" "$OUT/sonde_${VERSION}_amd64.deb"

echo "== .rpm"
RPM_ROOT=$(realpath -m "$OUT/rpm-root")
stage "$RPM_ROOT" usr/lib/systemd/system etc/sysconfig/sonde
install -m 0644 LICENSE-MIT LICENSE-APACHE "$RPM_ROOT/usr/share/doc/sonde/"
install -d -m 0750 "$RPM_ROOT/var/lib/sonde"
TOPDIR=$(realpath -m "$OUT/rpmbuild")
mkdir -p "$TOPDIR/SPECS"
sed -e "s/@VERSION@/$VERSION/" -e "s|@STAGE@|$RPM_ROOT|" packaging/rpm/sonde.spec > "$TOPDIR/SPECS/sonde.spec"
rpmbuild -bb --quiet --define "_topdir $TOPDIR" --define "_build_id_links none" \
    --define "use_source_date_epoch_as_buildtime 1" "$TOPDIR/SPECS/sonde.spec"
cp "$TOPDIR"/RPMS/x86_64/sonde-"$VERSION"-1.x86_64.rpm "$OUT/"

echo "== image context"
CTX=$OUT/image
mkdir -p "$CTX"
cp "$BIN" "$CTX/sonde"
cp /etc/ssl/certs/ca-certificates.crt "$CTX/"
printf 'root:x:0:0:root:/:/sbin/nologin\nsonde:x:65532:65532:sonde:/:/sbin/nologin\n' > "$CTX/passwd"
printf 'root:x:0:\nsonde:x:65532:\n' > "$CTX/group"

if [ "$want_image" = 1 ] && docker info >/dev/null 2>&1; then
    echo "== image sonde:$VERSION"
    DOCKER_BUILDKIT=0 docker build -q -f packaging/Dockerfile \
        --build-arg VERSION="$VERSION" --build-arg COMMIT="$COMMIT" \
        --build-arg CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
        -t "sonde:$VERSION" -t sonde:latest "$CTX"
    docker image ls sonde:latest --format 'image {{.Repository}}:{{.Tag}} {{.Size}}'
else
    echo "== no Docker engine reachable: image context left in $CTX (docker build -f packaging/Dockerfile $CTX)"
fi

ls -l "$BIN" "$OUT"/*.deb "$OUT"/*.rpm
