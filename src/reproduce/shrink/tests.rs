//! Tests of `shrink`.

use super::*;

#[test]
fn the_shrink_command_quotes_what_a_shell_would_split() {
    assert_eq!(
        shrink_command(Path::new("/tmp/snapstorm-x1"), Path::new("minimal.toml")),
        "snapstorm shrink /tmp/snapstorm-x1 -o minimal.toml"
    );
    assert_eq!(
        shrink_command(Path::new("/tmp/it's here"), Path::new("a b.toml")),
        r"snapstorm shrink '/tmp/it'\''s here' -o 'a b.toml'"
    );
}

#[test]
fn chunks_cover_the_items_in_order() {
    let items: Vec<u32> = (0..7).collect();
    let chunks = split(&items, 3);
    assert_eq!(chunks, vec![vec![0, 1], vec![2, 3], vec![4, 5, 6]]);
    assert_eq!(split(&items, 10).len(), 7);
}
