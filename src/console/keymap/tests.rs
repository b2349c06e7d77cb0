//! Tests of `keymap`.

use super::*;

/// Every key a row names is bound in that row, and every bound key is
/// named in the help (its row's keys or words): both directions.
#[test]
fn the_help_names_every_bound_key_and_binds_every_key_it_names() {
    for row in KEYMAP {
        let named: Vec<String> = row.bindings.iter().map(|b| b.key.name()).collect();
        for token in row.keys.split_whitespace() {
            assert!(
                named.iter().any(|n| n == token),
                "`{token}` is in the help but not bound in its row: {named:?}"
            );
        }
        for binding in row.bindings {
            let name = binding.key.name();
            assert!(
                row.keys.split_whitespace().any(|t| t == name)
                    || row
                        .does
                        .split(|c: char| !c.is_alphanumeric() && c != '-')
                        .any(|w| w == name),
                "`{name}` ({:?}) is bound but the help does not name it in `{}`",
                binding.context,
                row.keys
            );
        }
    }
}

/// No key means two things in one place: the first binding would win
/// in silence.
#[test]
fn no_key_is_bound_twice_in_one_context() {
    let all: Vec<&Binding> = KEYMAP.iter().flat_map(|row| row.bindings).collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(
                !(a.context == b.context && a.key == b.key),
                "{:?} is bound twice in {:?}",
                a.key,
                a.context
            );
        }
    }
}

#[test]
fn limits_come_from_their_constants() {
    assert!(KEYMAP[0].does().contains(&format!("at most {MAX_CLIENTS}")));
}

/// The fault menu's letters, as bound and as the help and the menu name
/// them, end at the last fault's key: a new fault cannot go unbound.
#[test]
fn every_fault_has_its_key_bound_and_named() {
    let last = *FAULT_KEYS.last().unwrap();
    let range = format!("a-{last}");
    let row = KEYMAP
        .iter()
        .find(|row| row.does.starts_with("fault menu"))
        .expect("the fault menu's row");
    assert!(row.does.contains(&range), "{}", row.does);
    for (key, kind) in FAULT_KEYS.iter().zip(FaultKind::ALL) {
        let bound = KEYMAP.iter().flat_map(|row| row.bindings).any(|binding| {
            binding.context == Context::FaultMenu
                && binding
                    .key
                    .matches(&KeyEvent::new(KeyCode::Char(*key), KeyModifiers::NONE))
                    .is_some()
        });
        assert!(bound, "{key} ({kind}) is not bound in the fault menu");
    }
}
