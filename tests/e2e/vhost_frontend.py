#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A hostile vhost-user frontend for tests/e2e/export_vhost.sh.

usage: vhost_frontend.py SOCKET

Connects to `xvl export vhost-user-blk` at SOCKET several times, each time
sending one kind of bad input, and checks the export answers it with an
error (REPLY_ACK non-zero, a dropped connection) or an I/O error in the
request's status byte, never a crash.  Also checks that a valid request in
between still succeeds.  Prints one line per check: "PASS what" or
"FAIL what"; exit status 1 if any check failed.  Guest memory is a memfd
of 1 MiB at guest-physical 0, frontend address UVA.
"""
import mmap
import os
import socket
import struct
import sys
import time

GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE = 1, 2, 3, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL = 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 15, 16, 17
SET_VRING_ENABLE, GET_CONFIG = 18, 24
NEED_REPLY = 0x8
PF_REPLY_ACK, PF_CONFIG = 1 << 3, 1 << 9
MEM = 1 << 20
UVA = 0x7F0000000000
NUM = 8
DESC, AVAIL, USED = 0x0, 0x1000, 0x2000

failed = 0
CAP = 0


def check(ok, what):
    global failed
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failed += 1


class Front:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(path)
        self.fd = os.memfd_create("guest", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, MEM)
        self.m = mmap.mmap(self.fd, MEM)

    def send(self, req, payload=b"", fds=(), flags=0x1):
        data = struct.pack("<III", req, flags, len(payload)) + payload
        socket.send_fds(self.s, [data], list(fds)) if fds else self.s.sendall(data)

    def recv(self, req):
        h = self._exact(12)
        r, flags, size = struct.unpack("<III", h)
        if r != req or not flags & 0x4:
            raise IOError("reply to %d: request %d flags %#x" % (req, r, flags))
        return self._exact(size)

    def _exact(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("connection closed")
            b += c
        return b

    def u64(self, req):
        self.send(req)
        return struct.unpack("<Q", self.recv(req))[0]

    def ack(self, req, payload=b"", fds=()):
        """Send with NEED_REPLY; the export's verdict (0 ok)."""
        self.send(req, payload, fds, 0x1 | NEED_REPLY)
        return struct.unpack("<Q", self.recv(req))[0]

    def handshake(self):
        feats = self.u64(GET_FEATURES)
        self.send(SET_OWNER)
        self.send(SET_FEATURES, struct.pack("<Q", feats & ((1 << 32) | (1 << 30) | (1 << 28))))
        pf = self.u64(GET_PROTOCOL_FEATURES)
        self.send(SET_PROTOCOL_FEATURES, struct.pack("<Q", pf & (PF_REPLY_ACK | PF_CONFIG)))
        return feats

    def mem_table(self, regions, nfds=None):
        p = struct.pack("<II", len(regions), 0)
        for gpa, size, uaddr, off in regions:
            p += struct.pack("<QQQQ", gpa, size, uaddr, off)
        fds = [self.fd] * (len(regions) if nfds is None else nfds)
        return self.ack(SET_MEM_TABLE, p, fds)

    def good_mem(self):
        return self.mem_table([(0, MEM, UVA, 0)])

    def start_ring(self, desc=DESC, avail=AVAIL, used=USED):
        self.kick, self.call = os.eventfd(0), os.eventfd(0)
        rc = self.ack(SET_VRING_NUM, struct.pack("<II", 0, NUM))
        rc |= self.ack(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, UVA + desc, UVA + used,
                                                    UVA + avail, 0))
        rc |= self.ack(SET_VRING_BASE, struct.pack("<II", 0, 0))
        rc |= self.ack(SET_VRING_CALL, struct.pack("<Q", 0), [self.call])
        rc |= self.ack(SET_VRING_KICK, struct.pack("<Q", 0), [self.kick])
        if rc == 0:
            rc |= self.ack(SET_VRING_ENABLE, struct.pack("<II", 0, 1))
        self.avail_idx = 0
        return rc

    def desc(self, i, addr, length, flags, nxt=0):
        struct.pack_into("<QIHH", self.m, DESC + 16 * i, addr, length, flags, nxt)

    def offer(self, head):
        struct.pack_into("<H", self.m, AVAIL + 4 + 2 * (self.avail_idx % NUM), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        struct.pack_into("<H", self.m, AVAIL + 2, self.avail_idx)
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.m, USED + 2)[0]

    def wait_used(self, n, timeout=3.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.used_idx() == n:
                return True
            time.sleep(0.01)
        return False

    def read_req(self, head, data_addr, length, status_addr=0x4000, hdr_addr=0x3000):
        """A 3-descriptor read at heads head..head+2; status preset to 0xff."""
        struct.pack_into("<IIQ", self.m, hdr_addr, 0, 0, 0)
        self.m[status_addr] = 0xFF
        self.desc(head, hdr_addr, 16, 1, head + 1)
        self.desc(head + 1, data_addr, length, 3, head + 2)
        self.desc(head + 2, status_addr, 1, 2)
        self.offer(head)

    def close(self):
        self.s.close()


def alive_after(path, what):
    """A fresh connection gets a handshake: the export survived."""
    try:
        f = Front(path)
        f.handshake()
        f.close()
        check(True, "export still serves after " + what)
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        check(False, "export still serves after %s (%s)" % (what, e))


def main(path):
    global CAP
    f = Front(path)
    feats = f.handshake()
    check(feats & (1 << 32) != 0, "GET_FEATURES offers VERSION_1 (%#x)" % feats)
    nq = f.u64(GET_QUEUE_NUM)
    check(nq >= 1, "GET_QUEUE_NUM = %d" % nq)
    f.send(GET_CONFIG, struct.pack("<III", 0, 60, 0) + bytes(60))
    cfg = f.recv(GET_CONFIG)
    cap = struct.unpack_from("<Q", cfg, 12)[0]
    CAP = cap
    check(len(cfg) == 72 and cap > 0, "GET_CONFIG gives a capacity (%d sectors)" % cap)
    check(f.mem_table([(0, 2 * MEM, UVA, 0)]) != 0, "region beyond its file refused")
    check(f.mem_table([(0, MEM // 2, UVA, 0), (MEM // 4, MEM // 2, UVA + MEM, 0)]) != 0,
          "overlapping regions refused")
    check(f.mem_table([(0, MEM, UVA, 0)], nfds=0) != 0, "region without a descriptor refused")
    check(f.mem_table([(0, MEM, 2**64 - 4096, 0)]) != 0, "region wrapping around refused")
    check(f.good_mem() == 0, "a valid memory table accepted")
    try:
        os.ftruncate(f.fd, MEM // 2)
        check(False, "guest memory sealed against shrinking once handed over")
    except PermissionError:
        check(True, "guest memory sealed against shrinking once handed over")
    check(f.start_ring(used=MEM - 16) != 0, "used ring outside guest memory refused")
    check(f.start_ring(desc=0x1008) != 0, "misaligned descriptor table refused")
    f.close()
    alive_after(path, "bad memory tables and rings")

    f = Front(path)
    feats = f.handshake()
    f.good_mem()
    check(f.start_ring() == 0, "valid ring started")
    f.read_req(0, 0x5000, 4096)
    check(f.wait_used(1) and f.m[0x4000] == 0, "valid read completes with status OK")
    f.read_req(3, 0x7FFF0000, 4096)
    check(f.wait_used(2) and f.m[0x4000] == 1, "data buffer outside guest memory: IOERR")
    f.read_req(0, MEM - 2048, 4096)
    check(f.wait_used(3) and f.m[0x4000] == 1, "data buffer crossing the end of memory: IOERR")
    f.m[0x4000] = 0xFF
    f.desc(0, 0x3000, 16, 1, 1)
    f.desc(1, 0x5000, 4096, 3, 0)  # loops back to the header
    f.offer(0)
    check(f.wait_used(4), "descriptor loop completes (bounded walk)")
    f.m[0x4000] = 0xFF
    f.desc(0, 0x3000, 16, 1, 7 + 100)  # next beyond the ring
    f.offer(0)
    check(f.wait_used(5), "next index beyond the ring completes")
    struct.pack_into("<IIQ", f.m, 0x3000, 0, 0, CAP - 4)  # 8 sectors from 4 before the end
    f.m[0x4000] = 0xFF
    f.desc(0, 0x3000, 16, 1, 1)
    f.desc(1, 0x5000, 4096, 3, 2)
    f.desc(2, 0x4000, 1, 2)
    f.offer(0)
    check(f.wait_used(6) and f.m[0x4000] == 1, "read beyond the end of the disk: IOERR")
    f.read_req(0, 0x5000, 4096)
    check(f.wait_used(7) and f.m[0x4000] == 0, "a valid read after all that: OK")
    check(feats & (1 << 28) != 0, "INDIRECT_DESC offered")
    tab = 0x6000
    struct.pack_into("<IIQ", f.m, 0x3000, 0, 0, 0)
    struct.pack_into("<QIHHQIHHQIHH", f.m, tab, 0x3000, 16, 1, 1, 0x5000, 4096, 3, 2, 0x4000, 1, 2, 0)
    f.m[0x4000] = 0xFF
    f.desc(0, tab, 48, 4)
    f.offer(0)
    check(f.wait_used(8) and f.m[0x4000] == 0, "a read through an indirect table: OK")
    struct.pack_into("<QIHHQIHHQIHH", f.m, tab, 0x3000, 16, 1, 1, 0x5000, 4096, 3, 2, 0x4000, 1, 2, 5)
    f.m[0x4000] = 0xFF
    f.desc(0, tab, 48, 4)
    f.offer(0)  # chain inside the table runs past the table's end
    check(f.wait_used(9) and f.m[0x4000] == 0, "indirect table: 'next' ignored without NEXT flag")
    struct.pack_into("<QIHH", f.m, tab + 16, tab, 48, 4 | 1, 2)  # nested indirect
    f.m[0x4000] = 0xFF
    f.desc(0, tab, 48, 4)
    f.offer(0)
    check(f.wait_used(10), "nested indirect table completes (refused)")
    f.desc(0, MEM - 32, 48, 4)  # table crossing the end of memory
    f.offer(0)
    check(f.wait_used(11), "indirect table outside memory completes (refused)")
    f.desc(0, tab + 8, 48, 4)  # misaligned table
    f.offer(0)
    check(f.wait_used(12), "misaligned indirect table completes (refused)")
    f.read_req(0, 0x5000, 4096)
    check(f.wait_used(13) and f.m[0x4000] == 0, "a valid read after the indirect ones: OK")
    f.offer(NUM + 5)  # head out of range: the ring stops
    time.sleep(0.2)
    check(f.used_idx() == 13, "head beyond the ring: queue stopped, nothing completed")
    f.close()
    alive_after(path, "bad descriptors")

    f = Front(path)
    f.handshake()
    f.good_mem()
    f.start_ring()
    struct.pack_into("<IIQ", f.m, 0x3000, 0, 0, 0)
    f.desc(0, 0x3000, 16, 1, 1)
    f.desc(1, 0x5000, 4096, 3, 2)
    f.desc(2, 0x4000, 1, 2)
    struct.pack_into("<HH", f.m, AVAIL + 4, 0, 0)  # head 0 twice in one batch
    struct.pack_into("<H", f.m, AVAIL + 2, 2)
    f.avail_idx = 2
    os.eventfd_write(f.kick, 1)
    time.sleep(0.3)
    check(f.used_idx() == 1, "a head offered again while in flight: the first completes, the queue stops")
    f.read_req(3, 0x5000, 4096)
    time.sleep(0.2)
    check(f.used_idx() == 1, "a stopped queue serves nothing more")
    f.close()
    f = Front(path)
    f.handshake()
    f.good_mem()
    f.start_ring()
    struct.pack_into("<H", f.m, AVAIL + 2, NUM + 3)  # avail index runs ahead of the ring
    os.eventfd_write(f.kick, 1)
    time.sleep(0.2)
    check(f.used_idx() == 0, "avail index beyond the ring size: queue stopped, nothing taken")
    f.close()
    alive_after(path, "ring protocol violations")

    f = Front(path)
    f.s.sendall(struct.pack("<III", GET_FEATURES, 0x7, 0))  # REPLY flag from a frontend
    try:
        f.recv(GET_FEATURES)
        check(False, "bad header: connection dropped")
    except (EOFError, ConnectionResetError, IOError):
        check(True, "bad header: connection dropped")
    f.close()
    f = Front(path)
    f.handshake()
    f.s.sendall(struct.pack("<III", SET_MEM_TABLE, 0x1, 4096))  # payload larger than any message
    try:
        f.s.sendall(bytes(4096))
        f.recv(GET_FEATURES)
        check(False, "oversized payload: connection dropped")
    except (EOFError, ConnectionResetError, BrokenPipeError, IOError):
        check(True, "oversized payload: connection dropped")
    f.close()
    alive_after(path, "broken framing")

    f1 = Front(path)
    f1.handshake()
    f2 = Front(path)
    f2.send(GET_FEATURES)
    f2.s.settimeout(0.5)
    try:
        f2.recv(GET_FEATURES)
        check(False, "a second frontend waits while one is connected")
    except socket.timeout:
        check(True, "a second frontend waits while one is connected")
    f1.close()
    f2.s.settimeout(5)
    try:
        check(struct.unpack("<Q", f2.recv(GET_FEATURES))[0] & (1 << 32) != 0,
              "the waiting frontend is served once the first one left")
    except Exception as e:  # noqa: BLE001
        check(False, "the waiting frontend is served once the first one left (%s)" % e)
    f2.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
