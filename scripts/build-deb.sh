#!/usr/bin/env bash
# Builds the kubebridge Debian package with plain dpkg-deb (no debhelper):
#
#   bash scripts/build-deb.sh                 # release build, static Swift stdlib -> build/kubebridge_<version>_<arch>.deb
#   bash scripts/build-deb.sh --binary .build/debug/kubebridge --out /tmp/deb   # package an existing binary (no swift build)
#
# Options:
#   --binary PATH   package this kubebridge binary instead of building one (tests use the debug build)
#   --out DIR       where the .deb goes (default: build/)
#   --version V     Debian version (default: from `git describe --tags --always`)
#   --no-static     build without --static-swift-stdlib (the package then needs the Swift runtime)
#   --no-strip      keep symbols in the packaged binary
#   --fast          gzip -1 instead of xz (quick test packages)
#   --scratch-path D  SwiftPM build directory (default .build-pkg; must not be one a running
#                   `swift test` uses: SwiftPM locks it and the build would wait forever)
#
# Prints the path of the .deb on the last line of stdout. Environment: DEBFULLNAME/DEBEMAIL
# (maintainer), SOURCE_DATE_EPOCH (timestamps; default: the commit's date).
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

binary=""
out="$REPO/build"
version=""
static=1
strip_binary=1
compress=(-Zxz -z9)
scratch=.build-pkg

die() { echo "build-deb: error: $*" >&2; exit 1; }
note() { echo "build-deb: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --version) version=${2:?--version needs a value}; shift 2 ;;
        --no-static) static=0; shift ;;
        --no-strip) strip_binary=0; shift ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        --scratch-path) scratch=${2:?--scratch-path needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

for tool in dpkg-deb dpkg ldd strip; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg binutils libc-bin)"
done
arch=$(dpkg --print-architecture)

# ---- version: 0.1.0+git<commit date>.<hash>, or <tag>+git<n>.<hash> after a tag ----
base_version=0.1.0
if [ -z "$version" ]; then
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        hash=$(git -C "$REPO" rev-parse --short=7 HEAD)
        date=$(git -C "$REPO" log -1 --format=%cd --date=format:%Y%m%d)
        # With a tag (v1.2.0): 1.2.0 on the tag, 1.2.0+git<date>.<n>.<hash> after it.
        # Without one, `git describe --tags --always` is the bare hash: 0.1.0+git<date>.<hash>.
        describe=$(git -C "$REPO" describe --tags --always)
        if ! git -C "$REPO" describe --tags >/dev/null 2>&1; then
            version="${base_version}+git${date}.${hash}"
        elif [[ "$describe" =~ ^v?([0-9][0-9A-Za-z.+~]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
            version="${BASH_REMATCH[1]}+git${date}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
        elif [[ "$describe" =~ ^v?([0-9][0-9A-Za-z.+~]*)$ ]]; then
            version="${BASH_REMATCH[1]}"
        else
            die "cannot make a Debian version of tag '$describe' (use --version)"
        fi
        # Uncommitted changes in the sources make a different package: say so in the version.
        if ! git -C "$REPO" diff --quiet HEAD -- Sources Package.swift 2>/dev/null; then
            version="${version}.dirty"
        fi
        : "${SOURCE_DATE_EPOCH:=$(git -C "$REPO" log -1 --format=%ct)}"
    else
        version="$base_version"
    fi
fi
# Debian policy 5.6.12: upstream version starts with a digit, only [A-Za-z0-9.+~-].
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "'$version' is not a valid Debian version"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}

# ---- the binary ----
built=0
manual_tool=""
if [ -z "$binary" ]; then
    built=1
    command -v swift >/dev/null || die "swift not found (or pass --binary PATH)"
    # --disable-local-rpath: no RUNPATH $ORIGIN (nothing is shipped next to the binary);
    # -z now: full RELRO (lintian's hardening-no-bindnow).
    flags=(-c release --scratch-path "$scratch" --product kubebridge --disable-local-rpath -Xlinker -z -Xlinker now)
    [ "$static" = 1 ] && flags+=(--static-swift-stdlib)
    note "swift build ${flags[*]}"
    swift build "${flags[@]}" >&2
    binary="$(swift build "${flags[@]}" --show-bin-path)/kubebridge"
    # The manual page comes from swift-argument-parser's generate-manual (a debug build of
    # the dependency's tool; it reads the binary's --experimental-dump-help).
    if swift build --scratch-path "$scratch" --product generate-manual >&2; then
        manual_tool="$(swift build --scratch-path "$scratch" --show-bin-path)/generate-manual"
    else
        note "warning: could not build generate-manual; the package has no manual page"
    fi
else
    # --binary: use the manual tool when an earlier full build left one.
    manual_tool="$scratch/debug/generate-manual"
fi
[ -x "$binary" ] || die "$binary is not an executable"
"$binary" --help >/dev/null 2>&1 || die "$binary --help failed: the binary does not run here"

work=$(mktemp -d "${TMPDIR:-/tmp}/kubebridge-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/kubebridge" \
    "$root/etc/iproute2/rt_protos.d" "$root/usr/share/doc/kubebridge/examples"
install -m 0755 "$binary" "$root/usr/bin/kubebridge"
if [ "$strip_binary" = 1 ]; then
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/kubebridge"
fi
# The packaged binary must still run and accept the packaged configuration.
"$root/usr/bin/kubebridge" --help >/dev/null 2>&1 || die "packaged binary does not run"
# The default has no `upstream` (it uses /etc/resolv.conf): check it against a stand-in
# resolv.conf, so that the result does not depend on this build machine's resolver.
printf 'nameserver 192.0.2.53\n' > "$work/resolv.conf"
sed "/^\[dns\]/a resolv-conf = \"$work/resolv.conf\"" packaging/deb/kubebridge.toml > "$work/kubebridge.toml"
"$root/usr/bin/kubebridge" check --config "$work/kubebridge.toml" >&2 \
    || die "packaging/deb/kubebridge.toml does not pass 'kubebridge check'"

if [ -n "$manual_tool" ] && [ -x "$manual_tool" ]; then
    install -d "$root/usr/share/man/man1"
    "$manual_tool" "$root/usr/bin/kubebridge" --date "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)" \
        --output-directory "$work" >&2 || die "generate-manual failed"
    gzip -9n < "$work/kubebridge.1" > "$root/usr/share/man/man1/kubebridge.1.gz"
    chmod 0644 "$root/usr/share/man/man1/kubebridge.1.gz"
else
    note "no manual page (build without --binary once to get generate-manual)"
fi

# ---- shared libraries -> Depends ----
# Every library must belong to an installed Debian package; a release build links the Swift
# runtime statically, so a libswift*/libFoundation* here means the static link did not happen.
unowned=()
while read -r lib; do
    [ -n "$lib" ] || continue
    real=$(readlink -f "$lib")
    if ! dpkg -S "$lib" >/dev/null 2>&1 && ! dpkg -S "$real" >/dev/null 2>&1; then unowned+=("$lib"); fi
done < <(ldd "$root/usr/bin/kubebridge" | awk '/=> \//{print $3} /^\s*\/lib/{print $1}')
if [ ${#unowned[@]} -gt 0 ]; then
    if [ "$built" = 1 ] && [ "$static" = 1 ]; then
        die "linked against libraries no package provides: ${unowned[*]}"
    fi
    note "warning: libraries outside any package (not in Depends): ${unowned[*]}"
fi

depends=""
if command -v dpkg-shlibdeps >/dev/null; then
    # dpkg-shlibdeps wants a source tree: a minimal debian/control is enough.
    mkdir -p "$work/src/debian"
    printf 'Source: kubebridge\n\nPackage: kubebridge\nArchitecture: any\n' > "$work/src/debian/control"
    depends=$(cd "$work/src" && dpkg-shlibdeps -O --ignore-missing-info -e"$root/usr/bin/kubebridge" 2>"$work/shlibdeps.err" \
        | sed -n 's/^shlibs:Depends=//p') || true
    # Libraries outside any package were reported above.
    grep -v "no dependency information found\\|binaries to analyze should already be installed\\|can't extract name and version" \
        "$work/shlibdeps.err" >&2 || true
fi
if [ -z "$depends" ]; then
    # Without dpkg-shlibdeps: the owning package of each library, unversioned.
    depends=$(ldd "$root/usr/bin/kubebridge" | awk '/=> \//{print $3}' | while read -r lib; do
        dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true
    done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
fi
[ -n "$depends" ] || die "could not compute Depends"

# ---- files ----
for unit in kubebridge-dns.service kubebridge-routes.service; do
    # The package installs to /usr/bin; the "install by hand" comment lines do not apply.
    sed -e 's#/usr/local/bin/kubebridge#/usr/bin/kubebridge#g' -e '/^#   install /d' \
        "systemd/$unit" > "$root/lib/systemd/system/$unit"
    chmod 0644 "$root/lib/systemd/system/$unit"
done
install -m 0644 packaging/deb/kubebridge.toml "$root/etc/kubebridge/kubebridge.toml"
install -m 0644 conf/rt_protos.d/kubebridge.conf "$root/etc/iproute2/rt_protos.d/kubebridge.conf"

doc="$root/usr/share/doc/kubebridge"
install -m 0644 README.md "$doc/README.md"
install -m 0644 packaging/deb/copyright "$doc/copyright"
(cd conf && find . -type f ! -name '.*' | sort) | while read -r f; do
    install -D -m 0644 "conf/$f" "$doc/examples/${f#./}"
done
maintainer=${DEBFULLNAME:-$(git -C "$REPO" log -1 --format=%an 2>/dev/null || echo kubebridge)}
email=${DEBEMAIL:-$(git -C "$REPO" log -1 --format=%ae 2>/dev/null || echo root@localhost)}
{
    echo "kubebridge ($version) unstable; urgency=medium"
    echo
    echo "  * Package built from $(git -C "$REPO" describe --tags --always --dirty 2>/dev/null || echo 'a source tree')."
    echo
    echo " -- $maintainer <$email>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$doc/changelog.gz"

# ---- control area ----
for s in postinst prerm postrm; do install -m 0755 "packaging/deb/$s" "$root/DEBIAN/$s"; done
printf '/etc/kubebridge/kubebridge.toml\n/etc/iproute2/rt_protos.d/kubebridge.conf\n' > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<EOF
Package: kubebridge
Version: $version
Architecture: $arch
Maintainer: $maintainer <$email>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: net
Priority: optional
Description: split DNS forwarder and gateway routes for a Kubernetes cluster
 kubebridge lets an office network use a Kubernetes cluster's names and
 addresses from one gateway node.
 .
 kubebridge dns is a caching UDP/TCP DNS forwarder that sends cluster zones
 and the reverse zones of the pod and service networks to kube-dns, and
 everything else to the office's or public resolvers (kubebridge-dns.service).
 .
 kubebridge routes turns on IP forwarding and installs the routes to the pod
 and service networks on the gateway (kubebridge-routes.service), and prints
 route commands and DHCP options for the rest of the office.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb="$(cd "$out" && pwd)/kubebridge_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
note "Depends: $depends"
note "$(du -h "$deb" | cut -f1) $deb"
echo "$deb"
