//! Reading a manuscript the way a narrator would: decode the bytes (UTF-8, UTF-8/UTF-16
//! with a byte-order mark, else Windows-1252/Latin-1), pull the text out of HTML, DOCX,
//! EPUB and PDF (a PDF whose text is out of reach counts as one chapter named after the
//! book), and split the text on "Chapter ..." headings.
//! It refuses empty and non-text input with a reason a person can act on. It never
//! touches the network, the store or the database.

use super::zip;

/// One chapter to narrate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chapter {
    /// The heading as written, e.g. "Chapter One: The Lamp".
    pub title: String,
    /// Words in the chapter's body.
    pub words: usize,
}

/// Why a manuscript cannot be narrated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManuscriptError {
    #[error("the manuscript is empty: there is no text to narrate")]
    Empty,
    #[error(
        "the manuscript is not a text document (it looks like binary data); use a TXT, MD, HTML, DOCX, EPUB or PDF file"
    )]
    Binary,
    #[error("the manuscript's text is not valid {0}")]
    Encoding(&'static str),
    #[error("the manuscript is named .{kind} but is not {what}: {why}")]
    WrongFormat {
        kind: &'static str,
        what: &'static str,
        why: String,
    },
}

/// The manuscript's chapters, read from `bytes`; `key` (the object key or file name)
/// gives the format by its extension, `title` names a manuscript without headings.
pub fn chapters(bytes: &[u8], key: &str, title: &str) -> Result<Vec<Chapter>, ManuscriptError> {
    if bytes.is_empty() {
        return Err(ManuscriptError::Empty);
    }
    let extension = key
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let text = match extension.as_str() {
        "docx" => docx_text(bytes)?,
        "epub" => epub_text(bytes)?,
        "pdf" => {
            check_pdf(bytes)?;
            match super::pdf::text(bytes) {
                Some(text) => text,
                // Text this reader cannot get at (a scan, other filters): one chapter.
                None => {
                    return Ok(vec![Chapter {
                        title: title.to_owned(),
                        words: bytes.len() / 8,
                    }]);
                }
            }
        }
        "html" | "htm" | "xhtml" => markup_to_text(&decode_text(bytes)?, Markup::Html),
        _ => decode_text(bytes)?,
    };
    let found = split_chapters(&text, title);
    if found.iter().all(|c| c.words == 0) && text.split_whitespace().next().is_none() {
        return Err(ManuscriptError::Empty);
    }
    Ok(found)
}

/// Decodes text: a UTF-8 or UTF-16 byte-order mark decides; otherwise UTF-8, else
/// Windows-1252 (Latin-1 with the printable 0x80-0x9F range). Binary data is refused.
pub fn decode_text(bytes: &[u8]) -> Result<String, ManuscriptError> {
    let text = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        String::from_utf8(rest.to_vec()).map_err(|_| ManuscriptError::Encoding("UTF-8"))?
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        utf16(rest, u16::from_le_bytes)?
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        utf16(rest, u16::from_be_bytes)?
    } else {
        if bytes.contains(&0) {
            return Err(ManuscriptError::Binary);
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => bytes.iter().map(|&b| windows_1252(b)).collect(),
        }
    };
    let total = text.chars().count();
    let controls = text
        .chars()
        .filter(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'))
        .count();
    // Real text has next to no control characters; binary noise has about one in ten.
    if controls * 100 > total {
        return Err(ManuscriptError::Binary);
    }
    if text.trim().is_empty() {
        return Err(ManuscriptError::Empty);
    }
    Ok(text)
}

fn utf16(bytes: &[u8], word: fn([u8; 2]) -> u16) -> Result<String, ManuscriptError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(ManuscriptError::Encoding("UTF-16 (odd number of bytes)"));
    }
    let units = bytes.chunks_exact(2).map(|p| word([p[0], p[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| ManuscriptError::Encoding("UTF-16"))
}

/// A byte as Windows-1252 (Latin-1 with printable characters in 0x80-0x9F).
pub(super) fn windows_1252(b: u8) -> char {
    const HIGH: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(HIGH[usize::from(b - 0x80)]).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// Which markup [`markup_to_text`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    Html,
    /// WordprocessingML (`word/document.xml`).
    Word,
}

/// The text of HTML/XHTML or WordprocessingML: tags dropped, block ends as line breaks,
/// scripts, styles and the head skipped, entities decoded.
pub fn markup_to_text(src: &str, markup: Markup) -> String {
    const HTML_BLOCKS: &[&str] = &[
        "p",
        "div",
        "br",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "li",
        "tr",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "hr",
        "pre",
        "table",
        "ul",
        "ol",
        "dt",
        "dd",
        "figcaption",
        "body",
    ];
    const SKIPPED: &[&str] = &["script", "style", "head", "title"];
    let mut out = String::with_capacity(src.len() / 2);
    let mut rest = src;
    while let Some(open) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..open]));
        let after = &rest[open..];
        if let Some(comment) = after.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(close) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[1..close];
        rest = &after[close + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/' && *c != '>')
            .collect::<String>()
            .to_ascii_lowercase();
        match markup {
            Markup::Html => {
                if !closing && !tag.ends_with('/') && SKIPPED.contains(&name.as_str()) {
                    let end = format!("</{name}");
                    let lower = rest.to_ascii_lowercase();
                    rest = match lower.find(&end) {
                        Some(i) => rest[i..].find('>').map_or("", |j| &rest[i + j + 1..]),
                        None => "",
                    };
                    continue;
                }
                if HTML_BLOCKS.contains(&name.as_str()) {
                    out.push('\n');
                }
            }
            Markup::Word => match name.as_str() {
                "w:p" if closing => out.push('\n'),
                "w:br" | "w:cr" => out.push('\n'),
                "w:tab" => out.push('\t'),
                _ => {}
            },
        }
    }
    out.push_str(&decode_entities(rest));
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = &after[..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('\u{2014}'),
                "ndash" => Some('\u{2013}'),
                "hellip" => Some('\u{2026}'),
                "lsquo" => Some('\u{2018}'),
                "rsquo" => Some('\u{2019}'),
                "ldquo" => Some('\u{201C}'),
                "rdquo" => Some('\u{201D}'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn docx_text(bytes: &[u8]) -> Result<String, ManuscriptError> {
    let wrong = |why: String| ManuscriptError::WrongFormat {
        kind: "docx",
        what: "a Word document",
        why,
    };
    let entries = zip::entries(bytes).map_err(|e| wrong(e.to_string()))?;
    let document = zip::read_named(bytes, &entries, "word/document.xml")
        .map_err(|e| wrong(e.to_string()))?
        .ok_or_else(|| wrong("it has no word/document.xml".into()))?;
    let xml =
        String::from_utf8(document).map_err(|_| wrong("word/document.xml is not UTF-8".into()))?;
    Ok(markup_to_text(&xml, Markup::Word))
}

fn epub_text(bytes: &[u8]) -> Result<String, ManuscriptError> {
    let wrong = |why: String| ManuscriptError::WrongFormat {
        kind: "epub",
        what: "an EPUB book",
        why,
    };
    let entries = zip::entries(bytes).map_err(|e| wrong(e.to_string()))?;
    let read = |name: &str| -> Result<Option<String>, ManuscriptError> {
        zip::read_named(bytes, &entries, name)
            .map_err(|e| wrong(e.to_string()))
            .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let mimetype = read("mimetype")?.unwrap_or_default();
    if mimetype.trim() != "application/epub+zip" {
        return Err(wrong(
            "its mimetype entry is not application/epub+zip".into(),
        ));
    }
    let container = read("META-INF/container.xml")?
        .ok_or_else(|| wrong("it has no META-INF/container.xml".into()))?;
    let opf_path = tags(&container, "rootfile")
        .find_map(|t| attr(t, "full-path"))
        .ok_or_else(|| wrong("its container names no package document".into()))?;
    let opf = read(&opf_path)?
        .ok_or_else(|| wrong(format!("its package document {opf_path} is missing")))?;
    let base = opf_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let items: Vec<(String, String, String)> = tags(&opf, "item")
        .filter_map(|t| {
            let id = attr(t, "id")?;
            let href = attr(t, "href")?;
            Some((id, href, attr(t, "properties").unwrap_or_default()))
        })
        .collect();
    let mut text = String::new();
    for idref in tags(&opf, "itemref").filter_map(|t| attr(t, "idref")) {
        let Some((_, href, properties)) = items.iter().find(|(id, _, _)| *id == idref) else {
            continue;
        };
        if properties.split_whitespace().any(|p| p == "nav") {
            continue;
        }
        let href = percent_encoding::percent_decode_str(href).decode_utf8_lossy();
        let path = if base.is_empty() {
            href.into_owned()
        } else {
            format!("{base}/{href}")
        };
        if let Some(page) = read(&path)? {
            text.push_str(&markup_to_text(&page, Markup::Html));
            text.push('\n');
        }
    }
    Ok(text)
}

fn check_pdf(bytes: &[u8]) -> Result<(), ManuscriptError> {
    let head = &bytes[..bytes.len().min(1024)];
    let is_pdf = head.windows(5).any(|w| w == b"%PDF-");
    if !is_pdf {
        return Err(ManuscriptError::WrongFormat {
            kind: "pdf",
            what: "a PDF document",
            why: "it has no %PDF header".into(),
        });
    }
    if !bytes.windows(5).any(|w| w == b"/Page") {
        return Err(ManuscriptError::WrongFormat {
            kind: "pdf",
            what: "a PDF document",
            why: "it has no pages".into(),
        });
    }
    Ok(())
}

/// The text inside each `<name ...>` tag of `xml` (namespace prefixes allowed).
fn tags<'a>(xml: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut rest = xml;
    std::iter::from_fn(move || {
        loop {
            let open = rest.find('<')?;
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let tag = &after[..close];
            rest = &after[close + 1..];
            let tag_name = tag.split(|c: char| c.is_whitespace() || c == '/').next()?;
            let local = tag_name.rsplit(':').next().unwrap_or(tag_name);
            if local == name {
                return Some(tag);
            }
        }
    })
}

/// The value of attribute `name` in a tag's text.
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before_ok = i > 0 && rest[..i].ends_with(|c: char| c.is_whitespace());
        let after = rest[i + name.len()..].trim_start();
        if before_ok && let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start();
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let inner = &value[1..];
                let end = inner.find(quote)?;
                return Some(decode_entities(&inner[..end]));
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

/// Splits on "Chapter ..." heading lines; text before the first heading is dropped
/// unless it is long enough to be a chapter of its own ("Introduction"). Without
/// headings the whole text is one chapter called `fallback_title`.
pub fn split_chapters(text: &str, fallback_title: &str) -> Vec<Chapter> {
    let mut chapters: Vec<Chapter> = Vec::new();
    let mut preamble = 0usize;
    for line in text.lines() {
        if let Some(title) = heading(line) {
            chapters.push(Chapter { title, words: 0 });
            continue;
        }
        let words = line.split_whitespace().count();
        match chapters.last_mut() {
            Some(chapter) => chapter.words += words,
            None => preamble += words,
        }
    }
    if chapters.is_empty() {
        return vec![Chapter {
            title: fallback_title.to_owned(),
            words: preamble,
        }];
    }
    if preamble > 50 {
        chapters.insert(
            0,
            Chapter {
                title: "Introduction".into(),
                words: preamble,
            },
        );
    }
    chapters
}

/// The heading's title if `line` is a chapter heading: "Chapter" (any case, optionally
/// after markdown `#`s or emphasis) then a number, a roman numeral or a number word.
fn heading(line: &str) -> Option<String> {
    let t = line.trim().trim_start_matches('#').trim();
    let t = t.trim_matches(|c| c == '*' || c == '_').trim();
    if t.chars().count() > 100 || !t.get(..7)?.eq_ignore_ascii_case("chapter") {
        return None;
    }
    let rest = &t[7..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let token = rest
        .trim_start()
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ':' | '.' | ',' | '\u{2013}' | '\u{2014}')
        })
        .next()?
        .trim_end_matches('-');
    let lower = token.to_ascii_lowercase();
    let numeric = !lower.is_empty() && lower.chars().all(|c| c.is_ascii_digit());
    let roman = !lower.is_empty() && lower.chars().all(|c| "ivxlcdm".contains(c));
    let worded = !lower.is_empty() && lower.split('-').all(is_number_word);
    (numeric || roman || worded).then(|| t.to_owned())
}

fn is_number_word(w: &str) -> bool {
    const WORDS: &[&str] = &[
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
    ];
    WORDS.contains(&w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
    }

    const TITLES: [&str; 3] = [
        "Chapter One: The Lamp",
        "Chapter Two: The Ledger",
        "Chapter Three: The Bell",
    ];

    #[test]
    fn every_fixture_format_is_read() {
        for name in ["txt", "md", "html", "docx", "epub", "pdf"] {
            let key = format!("manuscripts/u/j/lighthouse.{name}");
            let found = chapters(
                &fixture(&format!("manuscripts/lighthouse.{name}")),
                &key,
                "T",
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let titles: Vec<&str> = found.iter().map(|c| c.title.as_str()).collect();
            assert_eq!(titles, TITLES, "{name}");
            assert!(found.iter().all(|c| c.words > 100), "{name}: {found:?}");
        }
        // A PDF without text this reader can get at counts as one chapter.
        let opaque = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF";
        let pdf = chapters(opaque, "x/scan.pdf", "Book").unwrap();
        assert_eq!(pdf.len(), 1);
        assert_eq!(pdf[0].title, "Book");
    }

    #[test]
    fn odd_but_valid_files_are_read() {
        for name in [
            "utf16-bom.txt",
            "latin1.txt",
            "crlf-windows.txt",
            "Café – Ünïcode 📚.txt",
            "A+B  double  spaced & 100% done.txt",
            "UPPERCASE.DOCX",
        ] {
            let found = chapters(&fixture(&format!("odd-but-valid/{name}")), name, "T")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(found.len(), 3, "{name}: {found:?}");
            assert_eq!(found[0].title, TITLES[0], "{name}");
        }
    }

    #[test]
    fn latin1_decodes_to_the_right_characters() {
        let text = decode_text(&fixture("odd-but-valid/latin1.txt")).unwrap();
        assert!(!text.contains('\u{FFFD}'));
        assert_eq!(
            decode_text(b"caf\xe9 \x93quoted\x94").unwrap(),
            "café \u{201C}quoted\u{201D}"
        );
    }

    #[test]
    fn not_manuscripts_are_refused_with_a_reason() {
        for (name, want) in [
            ("empty.txt", "empty"),
            ("binary-noise.txt", "binary"),
            ("cover-image.pdf", "not a PDF"),
            ("photos-archive.docx", "word/document.xml"),
            ("program.epub", "not an EPUB"),
            ("~$lighthouse.docx", "not a Word document"),
            ("audiobook.mp3", "binary"),
        ] {
            let err = chapters(&fixture(&format!("not-manuscripts/{name}")), name, "T")
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        assert_eq!(
            chapters(b"  \n\t \n", "a.txt", "T"),
            Err(ManuscriptError::Empty)
        );
        assert_eq!(
            chapters(b"<html><body><p> </p></body></html>", "a.html", "T"),
            Err(ManuscriptError::Empty)
        );
    }

    #[test]
    fn headings_are_recognised_and_prose_is_not() {
        let text = "My Book\n\nCHAPTER 1\nfirst words here\n# Chapter II - Two\nmore\n\
                    **Chapter twenty-one**\nend\nChapter and verse were quoted.\nchapter 3.5\n";
        let found = split_chapters(text, "Fallback");
        let titles: Vec<&str> = found.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "CHAPTER 1",
                "Chapter II - Two",
                "Chapter twenty-one",
                "chapter 3.5"
            ]
        );
        assert_eq!(found[0].words, 3);
        assert_eq!(found[2].words, 6);
        let none = split_chapters("Just some prose.\nMore prose.", "Fallback");
        assert_eq!(
            none,
            vec![Chapter {
                title: "Fallback".into(),
                words: 5
            }]
        );
        let long_preamble = format!("{}\nChapter 1\nx", "word ".repeat(60));
        assert_eq!(split_chapters(&long_preamble, "F")[0].title, "Introduction");
    }

    #[test]
    fn markup_is_reduced_to_text() {
        let html = "<html><head><title>Skip me</title><style>p{}</style></head><body>\
                    <h2>Chapter One</h2><p>Tom &amp; Jerry&#39;s &#x2014; caf&eacute;</p>\
                    <!-- a comment --><script>var x = '<p>';</script></body></html>";
        let text = markup_to_text(html, Markup::Html);
        assert!(!text.contains("Skip me") && !text.contains("var x"));
        assert!(text.contains("\nChapter One\n"));
        assert!(text.contains("Tom & Jerry's \u{2014} caf&eacute;"));
        let word = "<w:p><w:r><w:t>Chapter One</w:t></w:r></w:p><w:p><w:r><w:t>A</w:t><w:tab/><w:t>B</w:t></w:r></w:p>";
        assert_eq!(markup_to_text(word, Markup::Word), "Chapter One\nA\tB\n");
    }

    #[test]
    fn bom_and_utf16_edge_cases() {
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi").unwrap(), "hi");
        assert_eq!(decode_text(b"\xFE\xFF\x00h\x00i").unwrap(), "hi");
        assert_eq!(
            decode_text(b"\xFF\xFEh\x00i"),
            Err(ManuscriptError::Encoding("UTF-16 (odd number of bytes)"))
        );
        assert_eq!(
            decode_text(b"\xFF\xFE\x00\xD8\x00\x00"),
            Err(ManuscriptError::Encoding("UTF-16"))
        );
    }
}
