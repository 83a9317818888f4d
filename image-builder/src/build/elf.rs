//! Just enough of ELF64 (little-endian) to tell a static executable from a dynamic one
//! and to list the shared libraries (`DT_NEEDED`) a dynamic one loads.

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const EM_X86_64: u16 = 62;

/// How an executable is linked, as far as the loader is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linkage {
    /// The program interpreter (`PT_INTERP`), e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// The shared libraries it needs (`DT_NEEDED`), in order.
    pub needed: Vec<String>,
}

impl Linkage {
    /// Whether the file runs without a loader or shared libraries (static or static-pie).
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn slice(data: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

fn c_string(data: &[u8], at: usize) -> Option<String> {
    let rest = data.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Reads the linkage of an x86_64 ELF executable or shared library.
///
/// Fails with a reason when `data` is not a 64-bit little-endian x86_64 ELF file or its
/// program headers or dynamic section are malformed.
pub fn linkage(data: &[u8]) -> Result<Linkage, String> {
    if data.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    if u16_at(data, 18) != Some(EM_X86_64) {
        return Err("not an x86_64 ELF file".into());
    }
    let malformed = || "malformed ELF program headers".to_string();
    let phoff = u64_at(data, 32).ok_or_else(malformed)?;
    let phentsize = u16_at(data, 54).ok_or_else(malformed)?;
    let phnum = u16_at(data, 56).ok_or_else(malformed)?;
    let mut segments = Vec::with_capacity(phnum.into());
    for index in 0..u64::from(phnum) {
        let header = slice(data, phoff + index * u64::from(phentsize), 56).ok_or_else(malformed)?;
        segments.push(Segment {
            kind: u32_at(header, 0).ok_or_else(malformed)?,
            offset: u64_at(header, 8).ok_or_else(malformed)?,
            vaddr: u64_at(header, 16).ok_or_else(malformed)?,
            filesz: u64_at(header, 32).ok_or_else(malformed)?,
        });
    }
    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(s) => Some(
            c_string(slice(data, s.offset, s.filesz).ok_or_else(malformed)?, 0)
                .ok_or_else(malformed)?,
        ),
        None => None,
    };
    let needed = match segments.iter().find(|s| s.kind == PT_DYNAMIC) {
        Some(dynamic) => needed(data, dynamic, &segments)?,
        None => Vec::new(),
    };
    Ok(Linkage {
        interpreter,
        needed,
    })
}

/// The `DT_NEEDED` names of the dynamic section `dynamic`.
fn needed(data: &[u8], dynamic: &Segment, segments: &[Segment]) -> Result<Vec<String>, String> {
    let malformed = || "malformed ELF dynamic section".to_string();
    let table = slice(data, dynamic.offset, dynamic.filesz).ok_or_else(malformed)?;
    let mut offsets = Vec::new();
    let mut strtab = None;
    for entry in table.chunks_exact(16) {
        let tag = u64_at(entry, 0).ok_or_else(malformed)?;
        let value = u64_at(entry, 8).ok_or_else(malformed)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => offsets.push(value),
            DT_STRTAB => strtab = Some(value),
            _ => {}
        }
    }
    if offsets.is_empty() {
        return Ok(Vec::new());
    }
    let strtab = strtab.ok_or_else(malformed)?;
    // DT_STRTAB is a virtual address: map it to the file through the loaded segments.
    let file_offset = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| s.vaddr <= strtab && strtab < s.vaddr + s.filesz)
        .map(|s| strtab - s.vaddr + s.offset)
        .ok_or_else(malformed)?;
    offsets
        .into_iter()
        .map(|name| {
            let at = usize::try_from(file_offset + name).map_err(|_| malformed())?;
            c_string(data, at).ok_or_else(malformed)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 x86_64 file: one PT_LOAD covering the whole file at vaddr 0,
    /// optionally a PT_INTERP and a PT_DYNAMIC with DT_NEEDED entries.
    pub(crate) fn crafted(interp: Option<&str>, needed: &[&str]) -> Vec<u8> {
        let phnum = 1 + usize::from(interp.is_some()) + usize::from(!needed.is_empty());
        let mut strings = vec![0u8];
        let interp_at = 64 + 56 * phnum;
        let interp_bytes = interp
            .map(|i| format!("{i}\0").into_bytes())
            .unwrap_or_default();
        let strtab_at = interp_at + interp_bytes.len();
        let mut name_offsets = Vec::new();
        for name in needed {
            name_offsets.push(strings.len() as u64);
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let dynamic_at = strtab_at + strings.len();
        let mut dynamic = Vec::new();
        for offset in &name_offsets {
            dynamic.extend_from_slice(&DT_NEEDED.to_le_bytes());
            dynamic.extend_from_slice(&offset.to_le_bytes());
        }
        dynamic.extend_from_slice(&DT_STRTAB.to_le_bytes());
        dynamic.extend_from_slice(&(strtab_at as u64).to_le_bytes());
        dynamic.extend_from_slice(&[0; 16]);
        let total = dynamic_at + dynamic.len();

        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&3u16.to_le_bytes());
        out[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut header = |kind: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 56];
            h[..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            h[16..24].copy_from_slice(&(offset as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            out.extend_from_slice(&h);
        };
        header(PT_LOAD, 0, total);
        if interp.is_some() {
            header(PT_INTERP, interp_at, interp_bytes.len());
        }
        if !needed.is_empty() {
            header(PT_DYNAMIC, dynamic_at, dynamic.len());
        }
        out.extend_from_slice(&interp_bytes);
        out.extend_from_slice(&strings);
        if !needed.is_empty() {
            out.extend_from_slice(&dynamic);
        }
        out
    }

    #[test]
    fn a_static_executable_is_static() {
        let linkage = linkage(&crafted(None, &[])).unwrap();
        assert!(linkage.is_static());
    }

    #[test]
    fn a_dynamic_executable_names_its_loader_and_libraries() {
        let data = crafted(
            Some("/lib64/ld-linux-x86-64.so.2"),
            &["libseccomp.so.2", "libc.so.6"],
        );
        let linkage = linkage(&data).unwrap();
        assert!(!linkage.is_static());
        assert_eq!(
            linkage.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(linkage.needed, ["libseccomp.so.2", "libc.so.6"]);
    }

    #[test]
    fn other_files_are_refused() {
        assert_eq!(linkage(b"#!/bin/sh\n").unwrap_err(), "not an ELF file");
        let mut data = crafted(None, &[]);
        data[18] = 3;
        assert_eq!(linkage(&data).unwrap_err(), "not an x86_64 ELF file");
        assert!(linkage(&data[..70]).is_err());
    }
}
