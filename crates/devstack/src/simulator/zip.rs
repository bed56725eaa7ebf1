//! Just enough of the ZIP format to read DOCX and EPUB manuscripts: the central directory
//! and stored or deflated entries, with every offset bounds-checked and every inflated
//! entry size-limited. It never writes archives and never trusts sizes from the file.

/// The largest entry this reader inflates (a guard against zip bombs).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("it is not a ZIP archive")]
    NotZip,
    #[error("the ZIP archive is damaged ({0})")]
    Damaged(&'static str),
    #[error("an entry uses an unsupported compression method ({0})")]
    Method(u16),
    #[error("an entry is larger than {MAX_ENTRY_BYTES} bytes when unpacked")]
    TooLarge,
}

/// One file in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    method: u16,
    compressed_size: usize,
    local_header: usize,
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, ZipError> {
    data.get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(ZipError::Damaged("truncated header"))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, ZipError> {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(ZipError::Damaged("truncated header"))
}

/// The entries listed in the central directory.
pub fn entries(data: &[u8]) -> Result<Vec<Entry>, ZipError> {
    if !data.starts_with(b"PK\x03\x04") && !data.starts_with(b"PK\x05\x06") {
        return Err(ZipError::NotZip);
    }
    // The end-of-central-directory record is in the last 22 + 65,535 bytes.
    let earliest = data.len().saturating_sub(22 + 65_535);
    let eocd = (earliest..data.len().saturating_sub(21))
        .rev()
        .find(|&i| data[i..].starts_with(b"PK\x05\x06"))
        .ok_or(ZipError::Damaged("no end of central directory"))?;
    let count = usize::from(u16_at(data, eocd + 10)?);
    let mut at = u32_at(data, eocd + 16)? as usize;
    let mut entries = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        if data.get(at..at + 4) != Some(b"PK\x01\x02") {
            return Err(ZipError::Damaged("bad central directory entry"));
        }
        let method = u16_at(data, at + 10)?;
        let compressed_size = u32_at(data, at + 20)? as usize;
        let name_len = usize::from(u16_at(data, at + 28)?);
        let extra_len = usize::from(u16_at(data, at + 30)?);
        let comment_len = usize::from(u16_at(data, at + 32)?);
        let local_header = u32_at(data, at + 42)? as usize;
        let name = data
            .get(at + 46..at + 46 + name_len)
            .ok_or(ZipError::Damaged("truncated name"))?;
        entries.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            compressed_size,
            local_header,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// The unpacked bytes of `entry`.
pub fn read(data: &[u8], entry: &Entry) -> Result<Vec<u8>, ZipError> {
    let at = entry.local_header;
    if data.get(at..at + 4) != Some(b"PK\x03\x04") {
        return Err(ZipError::Damaged("bad local header"));
    }
    let name_len = usize::from(u16_at(data, at + 26)?);
    let extra_len = usize::from(u16_at(data, at + 28)?);
    let start = at + 30 + name_len + extra_len;
    let raw = data
        .get(start..start + entry.compressed_size)
        .ok_or(ZipError::Damaged("entry runs past the end"))?;
    match entry.method {
        0 if raw.len() > MAX_ENTRY_BYTES => Err(ZipError::TooLarge),
        0 => Ok(raw.to_vec()),
        8 => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(raw, MAX_ENTRY_BYTES).map_err(|e| {
                match e.status {
                    miniz_oxide::inflate::TINFLStatus::HasMoreOutput => ZipError::TooLarge,
                    _ => ZipError::Damaged("corrupt deflate data"),
                }
            })
        }
        other => Err(ZipError::Method(other)),
    }
}

/// The unpacked bytes of the entry called `name`, if there is one.
pub fn read_named(data: &[u8], entries: &[Entry], name: &str) -> Result<Option<Vec<u8>>, ZipError> {
    match entries.iter().find(|e| e.name == name) {
        Some(entry) => read(data, entry).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

    #[test]
    fn reads_the_docx_fixture() {
        let data = std::fs::read(format!("{FIXTURES}/manuscripts/lighthouse.docx")).unwrap();
        let list = entries(&data).unwrap();
        assert!(list.iter().any(|e| e.name == "word/document.xml"));
        let doc = read_named(&data, &list, "word/document.xml")
            .unwrap()
            .unwrap();
        let xml = String::from_utf8(doc).unwrap();
        assert!(xml.contains("Chapter Two"));
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        assert_eq!(entries(b"hello"), Err(ZipError::NotZip));
        assert!(matches!(
            entries(b"PK\x03\x04 and then nothing"),
            Err(ZipError::Damaged(_))
        ));
    }
}
