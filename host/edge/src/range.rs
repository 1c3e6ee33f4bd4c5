//! One `Range: bytes=…` header against an object of known size.

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranged {
    /// No usable range (none, several, or not `bytes=`): the whole object, 200.
    Full,
    /// `[start, end)`, 206.
    Partial(u64, u64),
    /// The range starts beyond the end, 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`; anything else is served whole, as RFC 9110
/// allows a server to ignore a Range header it does not support.
pub fn parse(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Full;
    };
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Full;
    };
    match (first.trim(), last.trim()) {
        ("", n) => match n.parse::<u64>() {
            Ok(0) => Ranged::Unsatisfiable,
            Ok(_) if size == 0 => Ranged::Unsatisfiable,
            Ok(n) => Ranged::Partial(size.saturating_sub(n), size),
            Err(_) => Ranged::Full,
        },
        (a, b) => {
            let Ok(start) = a.parse::<u64>() else {
                return Ranged::Full;
            };
            let end = match b {
                "" => size,
                b => match b.parse::<u64>() {
                    Ok(last) if last >= start => (last + 1).min(size),
                    _ => return Ranged::Full,
                },
            };
            if start >= size {
                Ranged::Unsatisfiable
            } else {
                Ranged::Partial(start, end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_last_suffix_and_beyond() {
        assert_eq!(parse(None, 10), Ranged::Full);
        assert_eq!(parse(Some("bytes=0-0"), 10), Ranged::Partial(0, 1));
        assert_eq!(parse(Some("bytes=9-9"), 10), Ranged::Partial(9, 10));
        assert_eq!(parse(Some("bytes=5-"), 10), Ranged::Partial(5, 10));
        assert_eq!(parse(Some("bytes=-3"), 10), Ranged::Partial(7, 10));
        assert_eq!(parse(Some("bytes=-30"), 10), Ranged::Partial(0, 10));
        assert_eq!(parse(Some("bytes=2-100"), 10), Ranged::Partial(2, 10));
        assert_eq!(parse(Some("bytes=10-"), 10), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-1,3-4"), 10), Ranged::Full);
        assert_eq!(parse(Some("items=0-1"), 10), Ranged::Full);
        assert_eq!(parse(Some("bytes=5-2"), 10), Ranged::Full);
    }
}
