//! Uploads are judged by their bytes: the type comes from magic numbers, never from the sender's
//! file name or declared type, and only types we can show an agent safely are accepted.

/// Why an upload was refused; the text is fit to show the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the file is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the file's content is not an accepted type (PDF, PNG, JPEG, GIF, WebP or plain text)")]
    UnsupportedContent,
}

/// The content type of `bytes` if it is one we accept.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
    ];
    if let Some((_, kind)) = SIGNATURES.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(kind);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    // Plain text: valid UTF-8 without control bytes other than whitespace.
    let text = std::str::from_utf8(&bytes[..bytes.len().min(4096)]).ok()?;
    text.chars()
        .all(|c| !c.is_control() || c.is_whitespace())
        .then_some("text/plain")
}

/// A size as people read it: "20 MiB", "64 KiB", "900 bytes".
pub fn size_words(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// Checks an upload and returns its real content type.
pub fn check_upload(bytes: &[u8], limit: u64) -> Result<&'static str, UploadError> {
    let size = bytes.len() as u64;
    if size == 0 {
        return Err(UploadError::Empty);
    }
    if size > limit {
        return Err(UploadError::TooLarge { size, limit });
    }
    sniff(bytes).ok_or(UploadError::UnsupportedContent)
}

/// A display name safe to show and to send back: no path, no control characters, bounded.
pub fn clean_file_name(name: &str, content_type: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(120).collect();
    if cleaned.trim().is_empty() {
        let extension = content_type.rsplit('/').next().unwrap_or("bin").replace("plain", "txt");
        format!("file.{extension}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_the_type_not_the_name() {
        assert_eq!(check_upload(b"%PDF-1.7 ...", 100), Ok("application/pdf"));
        assert_eq!(check_upload(b"\x89PNG\r\n\x1a\n....", 100), Ok("image/png"));
        assert_eq!(check_upload(b"MZ\x90\x00\x03", 100), Err(UploadError::UnsupportedContent), "a program is refused");
        assert_eq!(check_upload(b"", 100), Err(UploadError::Empty));
        assert_eq!(check_upload(&[b'a'; 101], 100), Err(UploadError::TooLarge { size: 101, limit: 100 }));
        assert_eq!(clean_file_name("../../etc/passwd", "text/plain"), "passwd");
        assert_eq!(clean_file_name("", "image/png"), "file.png");
    }
}
