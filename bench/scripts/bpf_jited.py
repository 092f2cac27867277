#!/usr/bin/env python3
"""Writes the JITed machine code of a loaded BPF program to a file, for an instruction-level
profile where perf cannot annotate BPF (Debian's perf has no libopcodes, bpftool no libbfd,
and these guests have no /proc/kcore). Root. docs/performance.md shows the whole recipe:

    bench/scripts/bpf_jited.py PROG_ID steer.bin
    objdump -D -b binary -mi386:x86-64 --adjust-vma=0x<address in /proc/kallsyms> steer.bin

then count `perf script -F ip` samples per instruction address.
"""
import ctypes
import os
import struct
import sys

SYS_BPF = 321  # x86-64
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
INFO_SIZE = 256  # a prefix of struct bpf_prog_info; the kernel fills what fits

libc = ctypes.CDLL(None, use_errno=True)


def bpf(command, attr):
    buffer = ctypes.create_string_buffer(attr, 128)
    result = libc.syscall(SYS_BPF, command, buffer, 128)
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"bpf command {command}: {os.strerror(error)}")
    return result


def prog_info(fd, info):
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, INFO_SIZE, ctypes.addressof(info)))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bpf_jited.py PROG_ID OUTPUT")
    fd = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("I", int(sys.argv[1])))
    info = ctypes.create_string_buffer(INFO_SIZE)
    prog_info(fd, info)
    # struct bpf_prog_info: type, id, tag[8], jited_prog_len (offset 16), xlated_prog_len,
    # jited_prog_insns (offset 24).
    length = struct.unpack_from("I", info, 16)[0]
    if length == 0:
        sys.exit("the program is not JITed (or this process may not read it)")
    code = ctypes.create_string_buffer(length)
    # Only the JIT image is asked for: every other pointer field stays 0.
    ctypes.memset(info, 0, INFO_SIZE)
    struct.pack_into("IIQ", info, 16, length, 0, ctypes.addressof(code))
    prog_info(fd, info)
    with open(sys.argv[2], "wb") as out:
        out.write(code.raw)
    print(f"{length} bytes of machine code written to {sys.argv[2]}")


if __name__ == "__main__":
    main()
