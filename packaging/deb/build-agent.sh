#!/bin/bash
# Build the agent's Debian package, OUTDIR/syncclass-agent_VERSION_ARCH.deb (`make deb`).
# Usage: packaging/deb/build-agent.sh [OUTDIR]
#   PYTHON       interpreter with pip and setuptools that builds the project wheel
#   DEB_VERSION  package version (default: pyproject's)
#   WHEEL_CACHE  where the dependency wheels are kept (default: build/wheels-ARCH)
# The dependency wheels come from PyPI (pip download) for every python3 the package
# serves and stay cached until pyproject.toml or this script changes, so rebuilds work
# offline.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$repo/packaging/deb/agent
out=$(mkdir -p "${1:-$repo/build}" && cd "${1:-$repo/build}" && pwd)
python=${PYTHON:-python3}
version=$("$python" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
deb_version=${DEB_VERSION:-$version}
arch=$(dpkg --print-architecture)
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "build-agent.sh: no manylinux wheels for $arch" >&2; exit 1 ;;
esac
# Ubuntu 22.04: 3.10, Debian 12: 3.11, Ubuntu 24.04: 3.12, Debian 13: 3.13.  psutil and
# cryptography are abi3 and paho-mqtt, pyudev, pycparser, tomli pure; cffi and msgspec
# (the wire contract's decoder) are built per Python version, so each one gets its own.
PYTHONS="3.10 3.11 3.12 3.13"
# pip itself too: setup-venv runs it from its wheel instead of ensurepip (twice as fast).
REQS=("msgspec>=0.18" "paho-mqtt>=2.1" "psutil>=5.9" "pyudev>=0.24" "cryptography>=41" "pip")

cache=${WHEEL_CACHE:-$repo/build/wheels-$arch}
if [ ! -e "$cache/.complete" ] || [ "$repo/pyproject.toml" -nt "$cache/.complete" ] ||
        [ "$0" -nt "$cache/.complete" ]; then
    rm -rf "$cache"
    mkdir -p "$cache"
    for py in $PYTHONS; do
        extra=()
        # pip evaluates markers with the running interpreter, not --python-version, so the
        # 3.10-only dependencies (ours: tomli; cryptography's: typing-extensions) are named.
        [ "$py" = 3.10 ] && extra=("tomli>=1.1" "typing-extensions>=4.13.2")
        "$python" -m pip download --quiet --disable-pip-version-check --dest "$cache" \
            --only-binary :all: --implementation cp --python-version "$py" \
            --abi "cp${py/./}" --abi abi3 --abi none \
            --platform "manylinux_2_28_$machine" --platform "manylinux_2_17_$machine" \
            --platform "manylinux2014_$machine" --platform any \
            "${REQS[@]}" "${extra[@]}"
    done
    touch "$cache/.complete"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The project wheel, built from a copy so that setuptools' build/ and egg-info stay
# out of the repository.
mkdir "$work/src"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/agent" "$repo/fleet" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
    --wheel-dir "$work/project" "$work/src"

stage=$work/stage
opt=$stage/opt/syncclass-agent
install -d "$stage/DEBIAN" "$opt/wheels" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/usr/share/polkit-1/rules.d" "$stage/var/lib/polkit-1/localauthority/10-vendor.d" \
    "$stage/usr/share/doc/syncclass-agent" \
    "$stage/etc/syncclass"
cp "$cache"/*.whl "$work"/project/*.whl "$opt/wheels/"
chmod 0644 "$opt"/wheels/*.whl
install -m 0755 "$src/setup-venv" "$opt/setup-venv"
echo "$version" > "$opt/VERSION"
ln -s /opt/syncclass-agent/venv/bin/syncclass-agent "$stage/usr/bin/syncclass-agent"
install -m 0644 "$repo/systemd/syncclass-agent.service" "$stage/lib/systemd/system/"
install -m 0644 "$repo/provisioning/polkit/50-syncclass-agent.rules" \
    "$stage/usr/share/polkit-1/rules.d/"
# polkit 0.105 (Ubuntu 22.04) ignores the rule above and reads this instead.
install -m 0644 "$repo/provisioning/polkit/50-syncclass-agent.pkla" \
    "$stage/var/lib/polkit-1/localauthority/10-vendor.d/"
install -m 0640 "$repo/provisioning/agent.example.toml" "$stage/etc/syncclass/agent.toml"
install -m 0644 "$src/copyright" "$stage/usr/share/doc/syncclass-agent/copyright"
install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$stage/DEBIAN/"
install -m 0644 "$src/conffiles" "$stage/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$deb_version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$src/control.in" > "$stage/DEBIAN/control"
deb=$out/syncclass-agent_${deb_version}_$arch.deb
# gzip: the wheels are compressed already, and xz took 25 times as long for 5 % less.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
