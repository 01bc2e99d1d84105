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
_JGT_K = 0x25
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_insn = struct.Struct("=HBBI")


def build_filter() -> list[tuple[int, int, int, int]]:
    """ARP, RARP, unfragmented IPv4/UDP to port 67, IPv6/UDP to port 547 and ICMPv6 router
    and neighbour discovery (RS, NS, NA) pass; everything else is dropped in the kernel, so a
    VM's data traffic costs lmdp nothing. IPv6 extension headers are not walked: DHCPv6 and
    NDP from guests carry none (NDP must not be fragmented, RFC 6980)."""
    accept, reject = 20, 21
    # (code, jump-if-true target, jump-if-false target, k); targets are absolute indexes
    # here and made relative (to the next instruction) below.
    prog = [
        (_LD_H_ABS, None, None, 12),  # 0  A = ethertype
        (_JEQ_K, accept, 2, 0x0806),  # 1  ARP
        (_JEQ_K, accept, 3, 0x8035),  # 2  RARP (QEMU's post-migration announce)
        (_JEQ_K, 12, 4, 0x86DD),  # 3  IPv6
        (_JEQ_K, 5, reject, 0x0800),  # 4  IPv4
        (_LD_B_ABS, None, None, 23),  # 5  A = IP protocol
        (_JEQ_K, 7, reject, 17),  # 6  UDP
        (_LD_H_ABS, None, None, 20),  # 7  A = flags | fragment offset
        (_JSET_K, reject, 9, 0x1FFF),  # 8  a non-first fragment has no UDP header
        (_LDX_B_MSH, None, None, 14),  # 9  X = IP header length
        (_LD_H_IND, None, None, 16),  # 10 A = UDP destination port
        (_JEQ_K, accept, reject, 67),  # 11 DHCPv4 server port
        (_LD_B_ABS, None, None, 20),  # 12 A = IPv6 next header
        (_JEQ_K, 14, 16, 58),  # 13 ICMPv6
        (_LD_B_ABS, None, None, 54),  # 14 A = ICMPv6 type
        (_JGE_K, 17, reject, 133),  # 15 type >= 133 (RS) ...
        (_JEQ_K, 18, reject, 17),  # 16 UDP (reached from 13 only)
        (_JGT_K, reject, accept, 136),  # 17 ... and <= 136 (NA): RS, RA, NS, NA
        (_LD_H_ABS, None, None, 56),  # 18 A = UDP destination port
        (_JEQ_K, accept, reject, 547),  # 19 DHCPv6 server port
        (_RET_K, None, None, ACCEPT_SNAPLEN),  # 20 accept
        (_RET_K, None, None, 0),  # 21 reject
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
