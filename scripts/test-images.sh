#!/usr/bin/env bash
# The local test images. There is no registry to pull from, so they are made from Debian's
# busybox-static with `docker import`.
#   test-images.sh build   (re)creates harbormaster-test/busybox:1 and :2 (two digests)
#   test-images.sh clean   removes them
# HARBORMASTER_TEST_IMAGE names another repository (a test suite that wants images no one else
# rebuilds while it runs).
set -euo pipefail

IMAGE=${HARBORMASTER_TEST_IMAGE:-harbormaster-test/busybox}

case "${1:-build}" in
build)
  if ! docker info >/dev/null 2>&1; then
    echo "no Docker engine answers: the live tests need one (set HARBORMASTER_SKIP_LIVE=1 to skip them outside CI)" >&2
    exit 1
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp" "$work/root/usr/bin"
  cp /bin/busybox "$work/root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    # The applet list names busybox itself: linking it would replace the binary.
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$work/root/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" >"$work/root/etc/passwd"
  echo "nobody:x:65534:65534:nobody:/:/bin/false" >>"$work/root/etc/passwd"
  echo "root:x:0:" >"$work/root/etc/group"
  tar -C "$work/root" -cf "$work/rootfs.tar" .
  docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin:/usr/bin' "$work/rootfs.tar" "$IMAGE:1" >/dev/null
  # A second image with another digest, for update-stage tests.
  echo 2 >"$work/root/etc/harbormaster-test-version"
  tar -C "$work/root" -cf "$work/rootfs2.tar" .
  docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin:/usr/bin' "$work/rootfs2.tar" "$IMAGE:2" >/dev/null
  echo "built $IMAGE:1 and $IMAGE:2"
  ;;
clean)
  docker rmi -f "$IMAGE:1" "$IMAGE:2" >/dev/null 2>&1 || true
  ;;
esac
