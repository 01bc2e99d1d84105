"""AF_PACKET sockets for VM ports, with a classic BPF filter so only our protocols reach Python.

One socket per attached interface. The socket is created with protocol 0 (it receives
nothing), the filter is attached, and only then is it bound to ETH_P_ALL on the interface:
no frame can slip in before the filter is in place, so no drain step is needed.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

__all__ = ["PacketSocket", "build_filter", "ACCEPT_SNAPLEN"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: our own transmissions are not looped back
SO_ATTACH_FILTER = 26
ACCEPT_SNAPLEN = 0xFFFF

# Classic BPF opcodes (linux/filter.h).
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_H_IND = 0x48
_LDX_B_MSH = 0xB1
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06

_insn = struct.Struct("=HBBI")


def build_filter() -> list[tuple[int, int, int, int]]:
    """ARP, RARP and unfragmented IPv4/UDP to port 67 pass; everything else is dropped in
    the kernel, so a VM's data traffic costs lmdp nothing."""
    accept, reject = 11, 12
    # (code, jump-if-true target, jump-if-false target, k); targets are absolute indexes
    # here and made relative (to the next instruction) below.
    prog = [
        (_LD_H_ABS, None, None, 12),  # 0  A = ethertype
        (_JEQ_K, accept, 2, 0x0806),  # 1  ARP
        (_JEQ_K, accept, 3, 0x8035),  # 2  RARP (QEMU's post-migration announce)
        (_JEQ_K, 4, reject, 0x0800),  # 3  IPv4
        (_LD_B_ABS, None, None, 23),  # 4  A = IP protocol
        (_JEQ_K, 6, reject, 17),  # 5  UDP
        (_LD_H_ABS, None, None, 20),  # 6  A = flags | fragment offset
        (_JSET_K, reject, 8, 0x1FFF),  # 7  a non-first fragment has no UDP header
        (_LDX_B_MSH, None, None, 14),  # 8  X = IP header length
        (_LD_H_IND, None, None, 16),  # 9  A = UDP destination port
        (_JEQ_K, accept, reject, 67),  # 10 DHCP server port
        (_RET_K, None, None, ACCEPT_SNAPLEN),  # 11 accept
        (_RET_K, None, None, 0),  # 12 reject
    ]
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        out.append((code, 0 if jt is None else jt - i - 1, 0 if jf is None else jf - i - 1, k))
    return out


def _attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(_insn.pack(*i) for i in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def clear_error(sock: socket.socket) -> int:
    """Read and clear a pending socket error (ENETDOWN after the link went down)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


class PacketSocket:
    """A non-blocking AF_PACKET socket bound to one interface."""

    __slots__ = ("ifname", "ifindex", "sock", "fd", "_buf", "_view")

    def __init__(self, ifname: str, bufsize: int = 1 << 20):
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            _attach_filter(sock, build_filter())
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass  # kernels before 4.20: the filter still keeps load low
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
            # Bound while the link was down, the socket carries ENETDOWN; an event loop
            # that sees the error condition stops polling the fd. Clear it.
            clear_error(sock)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()
        self._buf = bytearray(ACCEPT_SNAPLEN)
        self._view = memoryview(self._buf)

    def recv_batch(self, limit: int = 64) -> list[bytes]:
        """Drain up to `limit` frames without blocking."""
        out = []
        recv_into = self.sock.recv_into
        view = self._view
        for _ in range(limit):
            try:
                n = recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno == errno.ENETDOWN:
                    break
                raise
            out.append(bytes(view[:n]))
        return out

    def send(self, frame: bytes) -> bool:
        try:
            self.sock.send(frame)
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            if e.errno in (errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO, errno.EAGAIN):
                return False
            raise

    def close(self) -> None:
        self.sock.close()
