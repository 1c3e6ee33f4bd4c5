//! The validator's decisions, free of any WIT type so they can be unit-tested natively.

/// HTTP status of every rejection: the request is well-formed, its content is not acceptable.
pub const STATUS: u16 = 422;

/// The plugin's settings, parsed once per call from the `config` import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Largest accepted declared size in bytes; `None` means no limit.
    pub max_size: Option<u64>,
    /// Accepted extensions, lower-case without the dot; empty means any.
    pub allowed_extensions: Vec<String>,
    /// Whether `check-head` rejects heads that are no known media container.
    pub sniff: bool,
}

impl Settings {
    /// Builds the settings from a key lookup (the `config` import's `get`).
    /// Absent and empty values mean "no restriction"; malformed values are an error naming the
    /// key, because guessing would silently change what gets accepted.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let value = |key: &str| {
            get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let max_size = value("max_size")
            .map(|v| {
                v.replace('_', "")
                    .parse::<u64>()
                    .map_err(|_| format!("max_size {v:?} is not a number of bytes"))
            })
            .transpose()?;
        let allowed_extensions = value("allowed_extensions")
            .map(|v| {
                v.split(',')
                    .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let sniff = match value("sniff").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!("sniff {other:?} is neither \"true\" nor \"false\""));
            }
        };
        Ok(Self {
            max_size,
            allowed_extensions,
            sniff,
        })
    }
}

/// What `check-upload` looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upload<'a> {
    /// File name the client declared.
    pub filename: Option<&'a str>,
    /// Size the client declared.
    pub declared_size: Option<u64>,
}

/// Checks the declared size and the file name's extension. `Err` holds the reason shown to the
/// client.
pub fn check_upload(settings: &Settings, upload: &Upload<'_>) -> Result<(), String> {
    if let (Some(size), Some(limit)) = (upload.declared_size, settings.max_size)
        && size > limit
    {
        return Err(format!("file is {size} bytes; the limit is {limit} bytes"));
    }
    if let Some(name) = upload.filename
        && !settings.allowed_extensions.is_empty()
    {
        let allowed = settings.allowed_extensions.join(", ");
        match extension(name) {
            None => {
                return Err(format!(
                    "file name {name:?} has no extension; allowed extensions: {allowed}"
                ));
            }
            Some(ext) if !settings.allowed_extensions.contains(&ext) => {
                return Err(format!(
                    "file extension \".{ext}\" is not allowed; allowed extensions: {allowed}"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The lower-cased extension of the last path component of `name`, if it has one.
fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (_, ext) = base.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// Checks the first bytes of the upload when sniffing is on.
pub fn check_head(settings: &Settings, head: &[u8]) -> Result<(), String> {
    if !settings.sniff || sniff(head).is_some() {
        return Ok(());
    }
    if head.is_empty() {
        return Err("the upload is empty".to_owned());
    }
    Err(
        "the file does not look like a video: its first bytes match no known container \
         (MP4/MOV, Matroska/WebM, MPEG-TS, AVI, FLV, Ogg, MPEG-PS)"
            .to_owned(),
    )
}

/// Names the media container whose signature starts `head`, if any.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(4, b"ftyp") {
        return Some("ISO BMFF (MP4/MOV)");
    }
    // Old QuickTime files may start with another top-level atom instead of `ftyp`.
    if [b"moov", b"mdat", b"wide", b"free", b"skip"]
        .iter()
        .any(|atom| at(4, *atom))
    {
        return Some("QuickTime");
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("Matroska/WebM");
    }
    // One sync byte is too weak a signal; two packets apart it is not a coincidence.
    if at(0, &[0x47]) && at(188, &[0x47]) {
        return Some("MPEG-TS");
    }
    // M2TS (Blu-ray, AVCHD): 192-byte packets, a 4-byte timestamp before each sync byte.
    if at(4, &[0x47]) && at(196, &[0x47]) {
        return Some("MPEG-TS (M2TS)");
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some("AVI");
    }
    if at(0, b"FLV\x01") {
        return Some("FLV");
    }
    if at(0, b"OggS") {
        return Some("Ogg");
    }
    if at(0, &[0x00, 0x00, 0x01, 0xBA]) {
        return Some("MPEG-PS");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    fn defaults() -> Settings {
        settings(&[
            ("max_size", "1000000"),
            ("allowed_extensions", "mp4, .MOV,mkv"),
            ("sniff", "true"),
        ])
        .unwrap()
    }

    fn upload(filename: Option<&str>, size: Option<u64>) -> Upload<'_> {
        Upload {
            filename,
            declared_size: size,
        }
    }

    #[test]
    fn parses_settings() {
        let s = defaults();
        assert_eq!(s.max_size, Some(1_000_000));
        assert_eq!(s.allowed_extensions, ["mp4", "mov", "mkv"]);
        assert!(s.sniff);
    }

    #[test]
    fn absent_or_empty_settings_restrict_nothing() {
        assert_eq!(settings(&[]).unwrap(), Settings::default());
        let s = settings(&[("max_size", ""), ("allowed_extensions", " ")]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(
            check_upload(&s, &upload(Some("x.exe"), Some(u64::MAX))),
            Ok(())
        );
    }

    #[test]
    fn malformed_settings_name_the_key() {
        assert!(
            settings(&[("max_size", "ten")])
                .unwrap_err()
                .contains("max_size")
        );
        assert!(settings(&[("sniff", "yes")]).unwrap_err().contains("sniff"));
    }

    #[test]
    fn size_limit() {
        let s = defaults();
        assert_eq!(check_upload(&s, &upload(None, Some(1_000_000))), Ok(()));
        assert_eq!(check_upload(&s, &upload(None, None)), Ok(()));
        assert_eq!(
            check_upload(&s, &upload(None, Some(5_000_000))),
            Err("file is 5000000 bytes; the limit is 1000000 bytes".to_owned())
        );
    }

    #[test]
    fn extensions() {
        let s = defaults();
        assert_eq!(check_upload(&s, &upload(Some("Clip.MP4"), None)), Ok(()));
        assert_eq!(
            check_upload(&s, &upload(Some("dir.exe/a.mov"), None)),
            Ok(())
        );
        assert_eq!(check_upload(&s, &upload(None, None)), Ok(()));
        let err = check_upload(&s, &upload(Some("setup.EXE"), None)).unwrap_err();
        assert!(err.contains("\".exe\""), "{err}");
        assert!(err.contains("mp4, mov, mkv"), "{err}");
        let err = check_upload(&s, &upload(Some("README"), None)).unwrap_err();
        assert!(err.contains("no extension"), "{err}");
    }

    #[test]
    fn size_is_checked_before_name() {
        let err = check_upload(&defaults(), &upload(Some("a.exe"), Some(2_000_000))).unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn sniffs_known_containers() {
        let mut ts = vec![0u8; 400];
        ts[0] = 0x47;
        ts[188] = 0x47;
        let mut m2ts = vec![0u8; 400];
        m2ts[4] = 0x47;
        m2ts[196] = 0x47;
        let cases: [(&[u8], &str); 9] = [
            (b"\0\0\0\x20ftypisom\0\0\x02\0", "ISO BMFF (MP4/MOV)"),
            (b"\0\0\0\x08wide\0\0\0\0mdat", "QuickTime"),
            (&[0x1A, 0x45, 0xDF, 0xA3, 0x9F], "Matroska/WebM"),
            (&ts, "MPEG-TS"),
            (&m2ts, "MPEG-TS (M2TS)"),
            (b"RIFF\x10\0\0\0AVI LIST", "AVI"),
            (b"FLV\x01\x05\0\0\0\x09", "FLV"),
            (b"OggS\0\x02", "Ogg"),
            (&[0, 0, 1, 0xBA, 0x44], "MPEG-PS"),
        ];
        for (head, name) in cases {
            assert_eq!(sniff(head), Some(name));
            assert_eq!(check_head(&defaults(), head), Ok(()));
        }
    }

    #[test]
    fn rejects_other_bytes_only_when_sniffing() {
        let mut lone_sync = vec![0u8; 400];
        lone_sync[0] = 0x47;
        for head in [&b"MZ\x90\0 not a video"[..], b"", b"\0\0\0", &lone_sync] {
            assert_eq!(sniff(head), None);
            assert!(check_head(&defaults(), head).is_err());
            assert_eq!(check_head(&Settings::default(), head), Ok(()));
        }
        let err = check_head(&defaults(), b"hello world, plain text").unwrap_err();
        assert!(err.contains("does not look like a video"), "{err}");
    }
}
