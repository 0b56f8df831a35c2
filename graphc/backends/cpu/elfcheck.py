"""Structural validation of an ELF64 relocatable object before LLVM is asked to load it.

LLVM (through llvmlite) parses and links object code on the assumption that it is well
formed: a header, section table, string table, symbol or relocation entry that points outside
the file, an unknown relocation type or an unresolvable external symbol can abort or crash
the process instead of raising. ``validate`` checks everything the loader reads (offsets,
sizes and indices in bounds, string tables terminated, only the section, symbol and
relocation kinds graphc's code generator emits) and raises ``ValueError`` naming the problem.

What it cannot check: the machine code and constant data themselves. Bytes inside ``.text``
run as they are; an object crafted to do harm (or altered and re-checksummed) is not caught
here. Stored native code must come from a trusted source, like a shared library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

EM_X86_64 = 62
EM_AARCH64 = 183

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOTE, SHT_NOBITS = 7, 8
SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_GROUP = 14, 15, 17
SHT_X86_64_UNWIND = 0x70000001
SHT_LLVM_ADDRSIG = 0x6FFF4C03
_SECTION_TYPES = {
    SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOTE, SHT_NOBITS,
    SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_GROUP, SHT_X86_64_UNWIND, SHT_LLVM_ADDRSIG,
}  # fmt: skip
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
_CODE = SHF_ALLOC | SHF_EXECINSTR

# symbol types: NOTYPE, OBJECT, FUNC, SECTION, FILE (no TLS, no GNU_IFUNC: an ifunc resolver
# would run at load time)
_SYMBOL_TYPES = {0, 1, 2, 3, 4}
_SYMBOL_BINDS = {0, 1, 2}  # LOCAL, GLOBAL, WEAK
STT_FUNC, STT_SECTION, STT_FILE = 2, 3, 4
_RELOC_SYMBOL_TYPES = {0, 1, 2, 3}

R_X86_64_PLT32 = 4
#: x86-64 relocation types the code generator emits -> bytes patched
X86_64_RELOCS = {
    0: 0,  # NONE
    1: 8,  # 64
    2: 4,  # PC32
    4: 4,  # PLT32
    9: 4,  # GOTPCREL
    10: 4,  # 32
    11: 4,  # 32S
    24: 8,  # PC64
    41: 4,  # GOTPCRELX
    42: 4,  # REX_GOTPCRELX
}

#: caps that keep a hostile header from making the loader allocate absurd amounts
MAX_SECTIONS = 4096
MAX_NOBITS = 1 << 30
MAX_ALIGN = 1 << 16


@dataclass
class ObjectInfo:
    """What ``validate`` learnt: defined global functions and undefined symbols."""

    machine: int
    functions: set = field(default_factory=set)  # global FUNC symbols defined in code
    undefined: set = field(default_factory=set)  # external symbols the object needs


def _cstr(table: bytes, off: int, what: str) -> str:
    if off >= len(table):
        raise ValueError(f"{what}: name offset {off} outside its string table")
    end = table.index(b"\x00", off)  # the table ends with NUL (checked)
    try:
        return table[off:end].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{what}: name is not ASCII") from None


def validate(obj: bytes, machine: int) -> ObjectInfo:
    """Check ``obj`` is a well-formed little-endian ELF64 relocatable object for ``machine``
    (an ``EM_*`` value); return its symbols. Raises ValueError naming the first problem."""
    n = len(obj)
    if n < 64 or obj[:4] != b"\x7fELF":
        raise ValueError("not an ELF object (bad magic or too short)")
    if obj[4] != 2 or obj[5] != 1 or obj[6] != 1:
        raise ValueError("not a little-endian ELF64 version-1 object")
    fields = struct.unpack_from("<HHIQQQIHHHHHH", obj, 16)
    e_type, e_machine, e_version, _entry, e_phoff, e_shoff, _flags, e_ehsize = fields[:8]
    _phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx = fields[8:]
    if e_type != 1:
        raise ValueError(f"ELF type {e_type}, expected a relocatable object (1)")
    if e_machine != machine:
        raise ValueError(f"ELF machine {e_machine}, this machine needs {machine}")
    if e_version != 1 or e_ehsize != 64 or e_phnum != 0 or e_phoff != 0:
        raise ValueError("unexpected ELF header fields (version, header size or segments)")
    if e_shentsize != 64 or not 0 < e_shnum <= MAX_SECTIONS:
        raise ValueError(f"bad section table ({e_shnum} entries of {e_shentsize} bytes)")
    if e_shoff < 64 or e_shoff + 64 * e_shnum > n:
        raise ValueError("section table outside the object")
    if e_shstrndx >= e_shnum:
        raise ValueError("section-name table index out of range")

    secs = []
    for i in range(e_shnum):
        (name, typ, flags, addr, off, size, link, info, align,
         entsize) = struct.unpack_from("<IIQQQQIIQQ", obj, e_shoff + 64 * i)  # fmt: skip
        secs.append((name, typ, flags, off, size, link, info, align, entsize))
        if i == 0:
            if typ != SHT_NULL or size or link or info:
                raise ValueError("section 0 must be the null section")
            continue
        if typ not in _SECTION_TYPES:
            raise ValueError(f"section {i}: unsupported type {typ:#x}")
        if align > MAX_ALIGN or (align & (align - 1)):
            raise ValueError(f"section {i}: bad alignment {align}")
        if addr != 0:
            raise ValueError(f"section {i}: non-zero address in a relocatable object")
        if typ == SHT_NOBITS:
            if size > MAX_NOBITS:
                raise ValueError(f"section {i}: {size} bytes of zero-filled data is too large")
        elif off + size > n:
            raise ValueError(f"section {i}: data outside the object")
        if link >= e_shnum:
            raise ValueError(f"section {i}: link {link} out of range")

    # section contents may not overlap each other, the ELF header or the section table
    # (a shifted offset would otherwise make the loader copy the wrong bytes as code)
    spans = [(0, 64, "the ELF header"), (e_shoff, e_shoff + 64 * e_shnum, "the section table")]
    spans += [(s[3], s[3] + s[4], f"section {i}") for i, s in enumerate(secs)
              if i and s[1] != SHT_NOBITS and s[4]]  # fmt: skip
    spans.sort()
    for (_, a1, aw), (b0, _, bw) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ValueError(f"{aw} and {bw} overlap")

    def data(i):
        _, typ, _, off, size, *_ = secs[i]
        return b"" if typ == SHT_NOBITS else obj[off : off + size]

    def sec_size(i):
        return secs[i][4]

    shstr = data(e_shstrndx)
    if secs[e_shstrndx][1] != SHT_STRTAB or not shstr or shstr[-1] != 0:
        raise ValueError("section-name table is not a NUL-terminated string table")
    names = [_cstr(shstr, s[0], f"section {i}") for i, s in enumerate(secs)]

    symtabs = [i for i, s in enumerate(secs) if s[1] == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise ValueError(f"expected one symbol table, found {len(symtabs)}")
    st = symtabs[0]
    _, _, _, _, st_size, st_link, st_info, _, st_ent = secs[st]
    if st_ent != 24 or st_size % 24:
        raise ValueError("symbol table entries are not 24 bytes")
    strtab = data(st_link)
    if secs[st_link][1] != SHT_STRTAB or not strtab or strtab[-1] != 0 or strtab[0] != 0:
        raise ValueError("symbol-name table is not a NUL-terminated string table")
    nsyms = st_size // 24
    if nsyms == 0 or st_info > nsyms:
        raise ValueError("symbol table is empty or its first-global index is out of range")
    syms = data(st)
    out = ObjectInfo(machine)
    sym_shndx, sym_types, funcs, seen_names = [], [], [], set()
    for j in range(nsyms):
        s_name, s_info, _other, s_shndx, s_value, s_size = struct.unpack_from(
            "<IBBHQQ", syms, 24 * j
        )
        what = f"symbol {j}"
        name = _cstr(strtab, s_name, what)
        styp, bind = s_info & 0xF, s_info >> 4
        if styp not in _SYMBOL_TYPES or bind not in _SYMBOL_BINDS:
            raise ValueError(f"{what} ({name}): unsupported type {styp} / binding {bind}")
        if j and (bind == 0) != (j < st_info):  # locals first, as sh_info says
            raise ValueError(f"{what} ({name}): binding {bind} out of order")
        if styp == STT_FILE and (bind != 0 or s_shndx != SHN_ABS):
            raise ValueError(f"{what} ({name}): a file symbol must be local and absolute")
        sym_types.append(styp)
        sym_shndx.append(s_shndx)
        if styp == STT_SECTION and (bind != 0 or s_value or s_size or s_shndx == SHN_UNDEF):
            raise ValueError(f"{what}: a section symbol must be local, at offset 0")
        if s_shndx != SHN_UNDEF and styp in (0, 1, 2):
            # LLVM's loader resolves relocations by symbol NAME, locals included: two
            # symbols with one name would send a relocation to the wrong one
            if not name or name in seen_names:
                raise ValueError(f"{what}: defined symbol name {name!r} empty or repeated")
            seen_names.add(name)
        if s_shndx == SHN_UNDEF:
            if j and (bind == 0 or not name or styp not in (0, 1, 2)):
                raise ValueError(f"{what} ({name}): an undefined symbol must be a named global")
            if j:
                out.undefined.add(name)
            continue
        if s_shndx in (SHN_ABS, SHN_COMMON):
            continue
        if s_shndx >= SHN_LORESERVE or s_shndx >= e_shnum or secs[s_shndx][1] == SHT_NULL:
            raise ValueError(f"{what} ({name}): section index {s_shndx} out of range")
        if s_value + s_size > sec_size(s_shndx):
            raise ValueError(f"{what} ({name}): extends past its section")
        if styp == STT_FUNC:
            if secs[s_shndx][1] != SHT_PROGBITS or (secs[s_shndx][2] & _CODE) != _CODE:
                raise ValueError(f"{what} ({name}): function outside an executable section")
            funcs.append((s_shndx, s_value, s_value + max(s_size, 1), name))
            if bind != 0:
                out.functions.add(name)
    funcs.sort()
    for a, b in zip(funcs, funcs[1:]):
        if a[0] == b[0] and b[1] < a[2]:
            raise ValueError(f"functions {a[3]} and {b[3]} overlap")

    relocs = X86_64_RELOCS if machine == EM_X86_64 else None
    for i, (_, typ, _, _, size, link, info, _, ent) in enumerate(secs):
        if typ == SHT_RELA:
            if ent != 24 or size % 24:
                raise ValueError(f"section {i}: relocation entries are not 24 bytes")
            if link != st:
                raise ValueError(f"section {i}: relocations do not use the symbol table")
            if not 0 < info < e_shnum or secs[info][1] in (SHT_NULL, SHT_NOBITS, SHT_RELA):
                raise ValueError(f"section {i}: relocates an invalid section {info}")
            if not secs[info][2] & SHF_ALLOC:
                raise ValueError(f"section {i}: relocates section {info}, which is not loaded")
            target_size = sec_size(info)
            rel = data(i)
            for r in range(size // 24):
                r_off, r_info, _addend = struct.unpack_from("<QQq", rel, 24 * r)
                sym, rtype = r_info >> 32, r_info & 0xFFFFFFFF
                if sym >= nsyms:
                    raise ValueError(f"section {i}: relocation {r} names symbol {sym} of {nsyms}")
                if sym_types[sym] not in _RELOC_SYMBOL_TYPES:  # LLVM: "unreachable"
                    raise ValueError(f"section {i}: relocation {r} refers to a file symbol")
                if (
                    rtype == R_X86_64_PLT32
                    and relocs is not None
                    and not (sym_shndx[sym] == SHN_UNDEF or sym_types[sym] == STT_FUNC)
                ):
                    raise ValueError(f"section {i}: relocation {r} calls a non-function")
                shndx = sym_shndx[sym]
                if SHN_UNDEF < shndx < SHN_LORESERVE and not secs[shndx][2] & SHF_ALLOC:
                    raise ValueError(f"section {i}: relocation {r} refers to unloaded data")
                if relocs is not None:
                    if rtype not in relocs:
                        raise ValueError(f"section {i}: unsupported relocation type {rtype}")
                    width = relocs[rtype]
                else:
                    width = 8
                if r_off + width > target_size:
                    raise ValueError(f"section {i}: relocation {r} patches outside its section")
        elif typ == SHT_X86_64_UNWIND or names[i] == ".eh_frame":
            _check_eh_frame(data(i), i)
        elif typ == SHT_GROUP:
            raise ValueError(f"section {i}: section groups are not expected in graphc code")
    return out


def _check_eh_frame(d: bytes, i: int) -> None:
    """Each CIE/FDE record's length must stay inside the section (no 64-bit DWARF)."""
    pos, cies = 0, set()
    while pos + 4 <= len(d):
        (length,) = struct.unpack_from("<I", d, pos)
        if length == 0:
            return
        if length == 0xFFFFFFFF or length < 4 or pos + 4 + length > len(d):
            raise ValueError(f"section {i}: malformed unwind record at offset {pos}")
        (cie_ptr,) = struct.unpack_from("<I", d, pos + 4)
        if cie_ptr == 0:
            cies.add(pos)
        elif pos + 4 - cie_ptr not in cies:  # an FDE names the CIE it belongs to
            raise ValueError(f"section {i}: unwind record at {pos} names no CIE")
        pos += 4 + length
    if pos != len(d):
        raise ValueError(f"section {i}: trailing bytes after the unwind records")
