//! Tests of `http`.

use super::*;

#[test]
fn ranges_follow_rfc_9110() {
    assert_eq!(byte_range(None, 10), ByteRange::Whole);
    assert_eq!(
        byte_range(Some("bytes=0-3"), 10),
        ByteRange::Part { start: 0, end: 3 }
    );
    assert_eq!(
        byte_range(Some("bytes=5-"), 10),
        ByteRange::Part { start: 5, end: 9 }
    );
    assert_eq!(
        byte_range(Some("bytes=-4"), 10),
        ByteRange::Part { start: 6, end: 9 }
    );
    assert_eq!(
        byte_range(Some("bytes=-40"), 10),
        ByteRange::Part { start: 0, end: 9 }
    );
    // End beyond the file is clamped; start at or beyond the end is refused.
    assert_eq!(
        byte_range(Some("bytes=8-100"), 10),
        ByteRange::Part { start: 8, end: 9 }
    );
    assert_eq!(
        byte_range(Some("bytes=10-20"), 10),
        ByteRange::Unsatisfiable
    );
    assert_eq!(byte_range(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
    assert_eq!(byte_range(Some("bytes=-0"), 10), ByteRange::Unsatisfiable);
    assert_eq!(byte_range(Some("bytes=0-0"), 0), ByteRange::Unsatisfiable);
    // Malformed or multiple ranges: the whole file.
    assert_eq!(byte_range(Some("bytes=3-1"), 10), ByteRange::Whole);
    assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), ByteRange::Whole);
    assert_eq!(byte_range(Some("items=0-1"), 10), ByteRange::Whole);
}
