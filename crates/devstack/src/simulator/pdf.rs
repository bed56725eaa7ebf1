//! Just enough PDF to hear a manuscript: finds content streams, undoes the ASCII85 and
//! Flate filters, and reads the literal strings shown by the text operators (`Tj`, `TJ`,
//! `'`, `"`), with line breaks at text moves. Fonts and layout are ignored; bytes are read
//! as WinAnsi. It never renders, and returns `None` rather than guessing when a PDF's text
//! is out of its reach (other filters, hex-encoded glyphs, scans).

/// The largest stream this reader inflates.
const MAX_STREAM_BYTES: usize = 16 * 1024 * 1024;

/// The text of a PDF's content streams, or `None` if there is none it can read.
pub fn text(pdf: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut at = 0;
    while let Some(found) = find(&pdf[at..], b"stream") {
        let start_kw = at + found;
        at = start_kw + 6;
        // `endstream` contains `stream`: only a keyword after a dictionary starts one.
        if pdf[..start_kw].ends_with(b"end") {
            continue;
        }
        let dict_start = rfind(&pdf[..start_kw], b"<<").unwrap_or(start_kw);
        let dict = &pdf[dict_start..start_kw];
        let mut data_start = at;
        if pdf.get(data_start) == Some(&b'\r') {
            data_start += 1;
        }
        if pdf.get(data_start) == Some(&b'\n') {
            data_start += 1;
        }
        let Some(len) = find(&pdf[data_start..], b"endstream") else {
            break;
        };
        let raw = &pdf[data_start..data_start + len];
        at = data_start + len + 9;
        if let Some(decoded) = decode(dict, raw) {
            out.push_str(&shown_text(&decoded));
        }
    }
    out.split_whitespace().next().is_some().then_some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Applies the stream's filters in order; `None` for a filter this reader lacks.
fn decode(dict: &[u8], raw: &[u8]) -> Option<Vec<u8>> {
    let dict = String::from_utf8_lossy(dict);
    let filters: Vec<&str> = match dict.find("/Filter") {
        None => Vec::new(),
        Some(i) => {
            let rest = dict[i + 7..].trim_start();
            let list = if let Some(array) = rest.strip_prefix('[') {
                &array[..array.find(']')?]
            } else {
                rest.split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or("")
            };
            list.split('/')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        }
    };
    let mut data = raw.to_vec();
    for filter in filters {
        data = match filter {
            "ASCII85Decode" | "A85" => ascii85(&data)?,
            "FlateDecode" | "Fl" => {
                miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&data, MAX_STREAM_BYTES)
                    .ok()?
            }
            _ => return None,
        };
    }
    Some(data)
}

fn ascii85(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(src.len() * 4 / 5);
    let mut group = [0u8; 5];
    let mut n = 0;
    let body = src.strip_prefix(b"<~").unwrap_or(src);
    for &c in body {
        match c {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group[n] = c - b'!';
                n += 1;
                if n == 5 {
                    let v = group.iter().try_fold(0u32, |acc, &d| {
                        acc.checked_mul(85)?.checked_add(u32::from(d))
                    })?;
                    out.extend_from_slice(&v.to_be_bytes());
                    n = 0;
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => return None,
        }
    }
    if n == 1 {
        return None;
    }
    if n > 1 {
        for slot in group.iter_mut().skip(n) {
            *slot = 84;
        }
        let v = group.iter().try_fold(0u32, |acc, &d| {
            acc.checked_mul(85)?.checked_add(u32::from(d))
        })?;
        out.extend_from_slice(&v.to_be_bytes()[..n - 1]);
    }
    Some(out)
}

/// The strings a content stream shows, a line break at each text move or new block.
fn shown_text(content: &[u8]) -> String {
    let mut out = String::new();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < content.len() {
        let c = content[i];
        match c {
            b'(' => {
                let (s, next) = literal(content, i + 1);
                pending.push(s);
                i = next;
                continue;
            }
            b'%' => {
                while i < content.len() && content[i] != b'\n' && content[i] != b'\r' {
                    i += 1;
                }
            }
            b'\'' | b'"' => {
                out.push('\n');
                flush(&mut out, &mut pending);
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                let start = i;
                while i < content.len()
                    && (content[i].is_ascii_alphanumeric() || content[i] == b'*')
                {
                    i += 1;
                }
                match &content[start..i] {
                    b"Tj" | b"TJ" => flush(&mut out, &mut pending),
                    b"Td" | b"TD" | b"T*" | b"Tm" | b"ET" => out.push('\n'),
                    _ => pending.clear(),
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn flush(out: &mut String, pending: &mut Vec<Vec<u8>>) {
    for s in pending.drain(..) {
        out.extend(s.into_iter().map(super::manuscript::windows_1252));
    }
}

/// A literal string starting after its `(`: the bytes and the index after its `)`.
fn literal(src: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 1;
    while i < src.len() {
        let c = src[i];
        i += 1;
        match c {
            b'\\' => {
                let Some(&e) = src.get(i) else { break };
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match src.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((v & 0xFF) as u8);
                    }
                    b'\r' | b'\n' => {
                        if e == b'\r' && src.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                    }
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    (out, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii85_round_trips_known_values() {
        assert_eq!(ascii85(b"87cURD]i,\"Ebo80~>").unwrap(), b"Hello World!");
        assert_eq!(ascii85(b"z~>").unwrap(), vec![0; 4]);
        assert_eq!(ascii85(b"<~9jqo^~>").unwrap(), b"Man ");
        assert_eq!(ascii85(b"9jqo~>").unwrap(), b"Man");
        assert!(ascii85(b"\x7f").is_none());
    }

    #[test]
    fn text_operators_are_read() {
        let content = b"BT /F1 12 Tf 72 700 Td (Chapter One: The \\(Lamp\\)) Tj T* \
                        [(Hel) -20 (lo)] TJ (caf\\351) ' ET";
        let text = shown_text(content);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines, ["Chapter One: The (Lamp)", "Hello", "café"]);
    }

    #[test]
    fn what_it_cannot_read_is_none() {
        assert_eq!(text(b"%PDF-1.4 no streams here"), None);
        let hex_only = b"%PDF-1.4\n1 0 obj << /Length 9 >> stream\n<48656c6c6f> Tj\nendstream";
        assert_eq!(text(hex_only), None);
    }
}
