#!/usr/bin/env python3
"""Checks that a default build's machine code needs no more than x86-64 (SSE2) outside the
kernels compiled once per ISA, and that no kernel compilation exports a shared symbol.

  check_baseline.py FILE... [--kernel-objects DIR...]

FILE: executables, static libraries or object files. DIR: folders whose *.o files are
compiled for avx2 or avx512; none may define a weak symbol (an inline function or template
instance the linker would merge with another compilation's) outside its own namespaces.

Disassembles each FILE with objdump and, for every function that does not belong to an
avx2 or avx512 compilation of a kernel (names carrying isa_avx2 / isa_avx512, IsaTag<…1> /
IsaTag<…2>, or polyak_eigen_avx2 / polyak_eigen_avx512), looks for instructions beyond
x86-64: any VEX or EVEX encoding (ymm, zmm and mask registers, v-prefixed vector
mnemonics), SSE3 to SSE4.2, POPCNT, LZCNT, BMI, MOVBE, F16C. Prints each offender with its
first such instruction and exits 1 if there is one; prints the counts checked otherwise.
"""
import pathlib
import re
import subprocess
import sys

KERNEL = re.compile(r"isa_avx2|isa_avx512|IsaTag<\(polyak::Isa\)[12]>|polyak_eigen_avx2|"
                    r"polyak_eigen_avx512")
BEYOND = set("""
addsubpd addsubps haddpd haddps hsubpd hsubps lddqu movddup movshdup movsldup
pabsb pabsw pabsd palignr phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw pmulhrsw
pshufb psignb psignw psignd
blendpd blendps blendvpd blendvps dppd dpps extractps insertps movntdqa mpsadbw packusdw
pblendvb pblendw pcmpeqq pextrb pextrd pextrq phminposuw pinsrb pinsrd pinsrq pmaxsb pmaxsd
pmaxud pmaxuw pminsb pminsd pminud pminuw pmovsxbw pmovsxbd pmovsxbq pmovsxwd pmovsxwq
pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq pmovzxdq pmuldq pmulld ptest roundpd
roundps roundsd roundss crc32 pcmpestri pcmpestrm pcmpistri pcmpistrm pcmpgtq
popcnt lzcnt andn bextr blsi blsmsk blsr bzhi mulx pdep pext rorx sarx shlx shrx movbe
""".split())
# tzcnt is allowed: GCC writes `rep bsf` for baseline code (bsf on older CPUs), which
# objdump shows as tzcnt.
WIDE_REG = re.compile(r"%[yz]mm\d+|%k[0-7]\b")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")


def check(path):
    out = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", path],
                         capture_output=True, text=True, check=True).stdout
    func, skip, offenders, functions = None, False, {}, 0
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            skip = bool(KERNEL.search(func))
            functions += 1
            continue
        if skip or func is None or "\t" not in line:
            continue
        parts = line.split("\t")
        insn = parts[-1].strip()
        if not insn:
            continue
        mnemonic = insn.split()[0]
        if mnemonic in ("rex", "data16", "lock", "rep", "repz", "repnz", "notrack", "bnd"):
            words = insn.split()
            mnemonic = words[1] if len(words) > 1 else mnemonic
        vex = mnemonic.startswith("v") and mnemonic not in ("verr", "verw")
        if vex or mnemonic in BEYOND or WIDE_REG.search(insn):
            offenders.setdefault(func, insn)
    return functions, offenders


def weak_symbols(directory):
    """Weak symbols that the *.o files under `directory` define outside the ISA namespaces."""
    found = []
    for obj in sorted(pathlib.Path(directory).rglob("*.o")):
        out = subprocess.run(["nm", "-C", "--defined-only", str(obj)], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) < 3 or parts[1] not in ("W", "V", "u", "w", "v"):
                continue
            name = parts[2]
            if KERNEL.search(name) or name == "DW.ref.__gxx_personality_v0":
                continue
            found.append(f"{obj.name}: {name}")
    return found


def main():
    args = sys.argv[1:]
    dirs = []
    if "--kernel-objects" in args:
        at = args.index("--kernel-objects")
        args, dirs = args[:at], args[at + 1:]
    bad = 0
    for directory in dirs:
        found = weak_symbols(directory)
        for f in found:
            print(f"{directory}: exports {f}")
        bad += len(found)
        print(f"{directory}: {len(found)} weak symbols outside the ISA namespaces")
    for path in args:
        functions, offenders = check(path)
        for func, insn in sorted(offenders.items()):
            print(f"{path}: {func}: {insn}")
        bad += len(offenders)
        print(f"{path}: {functions} functions, {len(offenders)} beyond x86-64 outside the ISA kernels")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
