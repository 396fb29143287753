#!/bin/sh
# The driver VM's script for examples/two-vm.cfg (run as /guest.sh by
# scripts/guest/initramfs.sh's /init): wait for /dev/vda (served by the
# device VM through the window), write 4 MiB in O_DIRECT, read it back,
# compare, print the checksum; the guest then powers off and, with
# exit_with_drivers, `xvl run` stops.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || { echo "DRIVER: no /dev/vda"; exit 1; }
echo "DRIVER: /dev/vda has $(cat /sys/block/vda/size) sectors"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/vda bs=65536 oflag=direct conv=fsync 2>/dev/null || { echo "DRIVER: write failed"; exit 1; }
dd if=/dev/vda of=/tmp/back bs=65536 count=64 iflag=direct 2>/dev/null || { echo "DRIVER: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "DRIVER: readback differs"; exit 1; }
echo "DRIVER: 4 MiB verified, sha256 $(sha256sum /tmp/pat | cut -d' ' -f1)"
