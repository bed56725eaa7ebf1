//! Which files are manuscripts: the engine's list (.txt .md .docx .pdf .epub .html .htm),
//! checked by extension and by content sniffing, before any network traffic.
//!
//! It owns the acceptance rules and the content type each accepted file is sent with. It
//! reads at most the first and last 64 KiB of a file and never touches the network.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The extensions the engine accepts (its `UPLOAD_EXTENSIONS`), lower case, without dot.
pub const MANUSCRIPT_EXTENSIONS: &[&str] = &["txt", "md", "docx", "pdf", "epub", "html", "htm"];

const SNIFF_BYTES: usize = 64 * 1024;

/// Why a file is not uploaded. The message names the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManuscriptError {
    #[error(
        "{path}: {reason}. Rohimaya accepts .txt, .md, .docx, .pdf, .epub and .html manuscripts"
    )]
    Refused { path: PathBuf, reason: String },
    #[error(
        "{path}: cannot read the file ({reason}). Check that it exists and that you may read it"
    )]
    Unreadable { path: PathBuf, reason: String },
}

impl crate::error::CoreError for ManuscriptError {
    fn code(&self) -> crate::error::ErrorCode {
        match self {
            ManuscriptError::Refused { .. } => crate::error::ErrorCode::ManuscriptRefused,
            ManuscriptError::Unreadable { .. } => crate::error::ErrorCode::FileUnreadable,
        }
    }
}

/// An accepted manuscript: what the upload needs to know before reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manuscript {
    pub path: PathBuf,
    /// The file name as the user sees it (the object key keeps it).
    pub file_name: String,
    pub size: u64,
    /// Modification time in milliseconds since the epoch (0 if the OS has none).
    pub mtime_ms: i64,
    pub content_type: &'static str,
}

/// Checks `path` and returns what it is, or why it is refused.
pub fn inspect(path: &Path) -> Result<Manuscript, ManuscriptError> {
    let refuse = |reason: &str| ManuscriptError::Refused {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let unreadable = |e: std::io::Error| ManuscriptError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(refuse("this is a folder, not a file"));
    }
    if !meta.is_file() {
        return Err(refuse("this is not a regular file"));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| refuse("the path does not name a file"))?;
    if file_name.starts_with("~$") {
        return Err(refuse(
            "this is an Office lock file (its name starts with ~$), not a document",
        ));
    }
    let ext = match file_name.rfind('.') {
        Some(i) if i > 0 => file_name[i + 1..].to_lowercase(),
        _ => String::new(),
    };
    if !MANUSCRIPT_EXTENSIONS.contains(&ext.as_str()) {
        let what = if ext.is_empty() {
            "the file has no extension".to_string()
        } else {
            format!(".{ext} files are not manuscripts")
        };
        return Err(refuse(&what));
    }
    if meta.len() == 0 {
        return Err(refuse("the file is empty (0 bytes)"));
    }
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut head = vec![0u8; SNIFF_BYTES.min(meta.len() as usize)];
    file.read_exact(&mut head).map_err(unreadable)?;
    let tail = if meta.len() as usize > SNIFF_BYTES {
        let mut tail = vec![0u8; SNIFF_BYTES];
        file.seek(SeekFrom::End(-(SNIFF_BYTES as i64)))
            .map_err(unreadable)?;
        file.read_exact(&mut tail).map_err(unreadable)?;
        tail
    } else {
        head.clone()
    };
    sniff(&ext, &head, &tail).map_err(|r| refuse(&r))?;
    let mtime_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(Manuscript {
        path: path.to_path_buf(),
        file_name,
        size: meta.len(),
        mtime_ms,
        content_type: content_type(&ext),
    })
}

/// The content type an accepted extension is sent with (the engine's types).
pub fn content_type(ext: &str) -> &'static str {
    match ext {
        "txt" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "pdf" => "application/pdf",
        "epub" => "application/epub+zip",
        _ => "application/octet-stream",
    }
}

/// What a file's first bytes say it is, for files whose content betrays another type.
fn known_binary(head: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x7fELF", "an ELF program"),
        (b"MZ", "a Windows program"),
        (b"ID3", "an MP3 audio file"),
        (b"\xff\xfb", "an MP3 audio file"),
        (b"RIFF", "a RIFF (WAV/AVI) media file"),
        (b"OggS", "an Ogg media file"),
        (b"fLaC", "a FLAC audio file"),
        (b"%PDF-", "a PDF document"),
        (b"PK\x03\x04", "a zip archive"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
        (b"Rar!", "a RAR archive"),
        (b"\xd0\xcf\x11\xe0", "an old Office (OLE) document"),
    ];
    MAGIC
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, what)| *what)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn sniff(ext: &str, head: &[u8], tail: &[u8]) -> Result<(), String> {
    let is_zip = head.starts_with(b"PK\x03\x04");
    let other = |expected: &str| match known_binary(head) {
        Some(what) => format!("its content is {what}, not {expected}"),
        None => format!("its content is not {expected}"),
    };
    match ext {
        "pdf" => {
            if contains(&head[..head.len().min(1024)], b"%PDF-") {
                Ok(())
            } else {
                Err(other("a PDF document"))
            }
        }
        "docx" => {
            if !is_zip {
                return Err(other("a Word document"));
            }
            if contains(head, b"word/") || contains(tail, b"word/document.xml") {
                Ok(())
            } else {
                Err("it is a zip archive without a Word document inside, not a .docx".into())
            }
        }
        "epub" => {
            if !is_zip {
                return Err(other("an EPUB book"));
            }
            if contains(head, b"application/epub+zip") || contains(tail, b"META-INF/container.xml")
            {
                Ok(())
            } else {
                Err("it is a zip archive without an EPUB book inside, not an .epub".into())
            }
        }
        _ => {
            let expected = if ext == "html" || ext == "htm" {
                "HTML text"
            } else {
                "text"
            };
            if is_text(head) {
                Ok(())
            } else {
                Err(match known_binary(head) {
                    Some(what) => format!("its content is {what}, not {expected}"),
                    None => format!("its content is binary data, not {expected}"),
                })
            }
        }
    }
}

/// Text in UTF-8, UTF-16 (with a BOM) or a single-byte encoding such as Latin-1: few
/// control characters besides tab, line feed, carriage return and form feed, and no NUL
/// (outside UTF-16).
fn is_text(head: &[u8]) -> bool {
    let utf16 = if head.starts_with(&[0xff, 0xfe]) {
        Some(true)
    } else if head.starts_with(&[0xfe, 0xff]) {
        Some(false)
    } else {
        None
    };
    if let Some(le) = utf16 {
        let units: Vec<u16> = head[2..]
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        let decoded: Vec<char> = char::decode_utf16(units)
            .map(|r| r.unwrap_or('\u{fffd}'))
            .collect();
        let bad = decoded
            .iter()
            .filter(|c| {
                **c == '\u{fffd}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'))
            })
            .count();
        return !decoded.is_empty() && bad * 100 <= decoded.len();
    }
    if known_binary(head).is_some() || head.contains(&0) {
        return false;
    }
    let controls = head
        .iter()
        .filter(|b| (**b < 0x20 && !matches!(**b, b'\t' | b'\n' | b'\r' | 0x0c)) || **b == 0x7f)
        .count();
    controls * 100 <= head.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sniffing() {
        assert!(is_text(b"Hello\r\nworld\t!"));
        assert!(is_text(b"Caf\xe9 au lait"));
        assert!(!is_text(&(0u8..=255).collect::<Vec<_>>()));
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("Story".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert!(is_text(&utf16));
    }

    #[test]
    fn sniff_names_the_real_type() {
        let e = sniff("pdf", b"\x89PNG\r\n\x1a\n....", b"").unwrap_err();
        assert!(e.contains("PNG"), "{e}");
        let e = sniff("epub", b"\x7fELF\x02\x01", b"").unwrap_err();
        assert!(e.contains("ELF"), "{e}");
        assert!(sniff("txt", b"plain words", b"").is_ok());
    }
}
