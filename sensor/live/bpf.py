"""tcpdump-style filter expressions compiled to classic BPF with libpcap.

Theory of operation: the kernel runs a classic BPF program on every frame
before it reaches the ring, so filtering there costs nothing in Python. We
do not write a compiler: libpcap's ``pcap_compile`` (reached through scapy's
ctypes bindings, the same library tcpdump uses) turns the expression into
``struct bpf_insn`` instructions, which have the layout of the kernel's
``struct sock_filter``:

=====  ======  =====  =====================================
field  offset  type   meaning
=====  ======  =====  =====================================
code   0       u16    opcode
jt     2       u8     jump offset if true
jf     3       u8     jump offset if false
k      4       u32    constant operand
=====  ======  =====  =====================================

The program's ``ret`` value is the number of bytes the kernel keeps, so the
snap length is compiled into it (an empty expression with a snap length
gives a one-instruction "keep the first N bytes" program).
"""

from __future__ import annotations

import ctypes
import struct

from darknet_iodef.errors import ConfigError

__all__ = ["MAX_SNAPLEN", "compile_filter", "describe_program"]

#: libpcap's largest snap length (MAXIMUM_SNAPLEN): "the whole frame"
MAX_SNAPLEN = 262144
_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
_INSN = struct.Struct("=HBBI")


def compile_filter(expression: str, linktype: int, snaplen: int = 0, setting: str = "bpf") -> bytes:
    """Classic BPF for ``expression`` on ``linktype`` as packed sock_filter bytes.

    A syntax error raises :class:`ConfigError` naming ``setting`` with
    libpcap's message.
    """
    try:
        from scapy.libs import winpcapy as pc
    except (ImportError, OSError) as exc:  # no libpcap on this host
        raise ConfigError(setting, f"libpcap is needed to compile filters ({exc})") from None
    snap = snaplen if snaplen > 0 else MAX_SNAPLEN
    handle = pc.pcap_open_dead(linktype, snap)
    if not handle:
        raise ConfigError(setting, f"libpcap refused link type {linktype}")
    prog = pc.bpf_program()
    try:
        if pc.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, _PCAP_NETMASK_UNKNOWN) < 0:
            reason = pc.pcap_geterr(handle).decode(errors="replace")
            raise ConfigError(setting, f"cannot compile {expression!r}: {reason}")
        try:
            size = prog.bf_len * ctypes.sizeof(prog.bf_insns.contents)
            return ctypes.string_at(prog.bf_insns, size)
        finally:
            pc.pcap_freecode(ctypes.byref(prog))
    finally:
        pc.pcap_close(handle)


def describe_program(program: bytes) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) per instruction, for logs and tests."""
    return [_INSN.unpack_from(program, i) for i in range(0, len(program), _INSN.size)]
