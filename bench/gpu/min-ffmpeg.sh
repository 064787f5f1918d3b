#!/usr/bin/env bash
# Builds a minimal FFmpeg for the device machine's demo run: the same FFmpeg version as the
# Debian dev packages `lofi` is linked against (so the same sonames and ABI), from Debian's
# source package, with only what lofi's demo and tests touch: H.264 through libx264 (the
# synthetic videos), MPEG-4 Part 2, the common decoders, the mp4/mkv/webm/avi containers, files
# only (no network), swscale. Why: Debian's libavcodec/libavformat link about 130 other shared
# libraries (every codec, TLS, Bluray, ...), 47 MiB compressed, and the device tool carries
# 64 MiB per call in all; this build and its closure compress to about 9 MiB.
#
# Usage: bench/gpu/min-ffmpeg.sh PREFIX   (prints nothing on stdout; PREFIX/lib holds the
# libraries afterwards; a second call with the same version does nothing). Needs apt (Debian's
# source package, libx264-dev, nasm), a C compiler and make; about 2 minutes on 2 cores.
set -euo pipefail
PREFIX=${1:?usage: min-ffmpeg.sh PREFIX}
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
FF_VERSION=$(dpkg-query -W -f='${source:Version}' libavcodec-dev 2>/dev/null || true)
if [ -z "$FF_VERSION" ]; then
  echo "min-ffmpeg.sh: libavcodec-dev is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi
if [ -f "$PREFIX/.version" ] && [ "$(cat "$PREFIX/.version")" = "$FF_VERSION" ] &&
  ls "$PREFIX"/lib/libavcodec.so.* >/dev/null 2>&1; then
  echo "min-ffmpeg.sh: FFmpeg $FF_VERSION already built in $PREFIX" >&2
  exit 0
fi

missing=""
for p in libx264-dev nasm; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "min-ffmpeg.sh: installing$missing" >&2
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
fi

# Debian's source package of exactly that version, through a private source list (the
# system's apt configuration is left as it is).
. /etc/os-release
SRC="$PREFIX/src"
rm -rf "$SRC" && mkdir -p "$SRC/lists/partial"
cat >"$SRC/sources.list" <<EOF
deb-src http://deb.debian.org/debian $VERSION_CODENAME main
deb-src http://deb.debian.org/debian $VERSION_CODENAME-updates main
deb-src http://deb.debian.org/debian-security $VERSION_CODENAME-security main
EOF
o="-oDir::Etc::SourceList=$SRC/sources.list -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists=$SRC/lists"
# shellcheck disable=SC2086
apt-get $o update >/dev/null
# shellcheck disable=SC2086
(cd "$SRC" && apt-get $o source --download-only "ffmpeg=$FF_VERSION" >/dev/null 2>&1) || {
  echo "min-ffmpeg.sh: apt-get source ffmpeg=$FF_VERSION failed (no deb-src for $VERSION_CODENAME?)" >&2
  exit 1
}
tar -xf "$SRC"/ffmpeg_*.orig.tar.xz -C "$SRC"
cd "$SRC"/ffmpeg-*/

echo "min-ffmpeg.sh: configuring and building FFmpeg $FF_VERSION into $PREFIX" >&2
./configure --prefix="$PREFIX" --enable-shared --disable-static --enable-pic \
  --disable-programs --disable-doc --disable-avdevice --disable-avfilter --disable-postproc \
  --disable-swresample --disable-network --disable-autodetect --disable-everything \
  --enable-gpl --enable-libx264 --enable-swscale \
  --enable-decoder=h264,hevc,mpeg4,mpeg1video,mpeg2video,vp8,vp9,av1,mjpeg,rawvideo \
  --enable-encoder=libx264,mpeg4 \
  --enable-demuxer=mov,matroska,avi,mpegts,m4v,h264 \
  --enable-muxer=mp4,mov,matroska,webm,avi \
  --enable-parser=h264,hevc,mpeg4video,mpegvideo,vp8,vp9,av1 \
  --enable-bsf=h264_mp4toannexb,vp9_superframe,extract_extradata \
  --enable-protocol=file >"$PREFIX/configure.log" 2>&1 || {
  echo "min-ffmpeg.sh: configure failed, see $PREFIX/configure.log" >&2
  exit 1
}
make -j"$(nproc)" >"$PREFIX/make.log" 2>&1 && make install >>"$PREFIX/make.log" 2>&1 || {
  echo "min-ffmpeg.sh: build failed, see $PREFIX/make.log" >&2
  exit 1
}
cd "$PREFIX" && rm -rf "$SRC"
echo "$FF_VERSION" >"$PREFIX/.version"
echo "min-ffmpeg.sh: built $(ls "$PREFIX"/lib/*.so.*.*.* | wc -l) libraries in $PREFIX/lib" >&2
