//! Rules for text people type that others see: learner names (shown on the instructor's dashboard
//! and printed by the CLI) and workshop names. Any script and emoji are welcome; what could steer
//! a terminal or reorder what a reader sees is not: C0/C1 control characters and DEL, bidi
//! embeddings, overrides and isolates (U+202A-202E, U+2066-2069), and line/paragraph separators.

/// Why a piece of display text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must be {min} to {max} characters")]
    Length { min: usize, max: usize },
    #[error("must not contain control or bidirectional-override characters (found U+{0:04X})")]
    Forbidden(u32),
}

/// Whether `c` may not appear in display text.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// `text` trimmed, when it is 1..=`max` characters without forbidden ones.
pub fn display_text(text: &str, max: usize) -> Result<&str, TextError> {
    let t = text.trim();
    if let Some(c) = t.chars().find(|c| is_forbidden(*c)) {
        return Err(TextError::Forbidden(u32::from(c)));
    }
    let n = t.chars().count();
    if !(1..=max).contains(&n) {
        return Err(TextError::Length { min: 1, max });
    }
    Ok(t)
}

/// Longest learner name, in characters.
pub const LEARNER_NAME_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learner_name_table() {
        let long = "é".repeat(64);
        let too_long = "é".repeat(65);
        let ok: &[(&str, &str)] = &[
            ("Ada", "Ada"),
            ("  Grace Hopper  ", "Grace Hopper"),
            ("Zoë 李雷 🙂", "Zoë 李雷 🙂"),
            ("مريم", "مريم"),
            ("O'Brien-Smith", "O'Brien-Smith"),
            (&long, &long),
        ];
        for (raw, want) in ok {
            assert_eq!(display_text(raw, LEARNER_NAME_MAX), Ok(*want), "{raw:?}");
        }
        let bad: &[(&str, TextError)] = &[
            ("", TextError::Length { min: 1, max: 64 }),
            ("   ", TextError::Length { min: 1, max: 64 }),
            (&too_long, TextError::Length { min: 1, max: 64 }),
            ("a\u{1b}[2Jb", TextError::Forbidden(0x1b)),
            ("a\nb", TextError::Forbidden(0x0a)),
            ("tab\there", TextError::Forbidden(0x09)),
            ("nul\0", TextError::Forbidden(0x00)),
            ("del\u{7f}", TextError::Forbidden(0x7f)),
            ("csi\u{9b}31m", TextError::Forbidden(0x9b)),
            ("evil\u{202e}txt.exe", TextError::Forbidden(0x202e)),
            ("\u{202a}x", TextError::Forbidden(0x202a)),
            ("x\u{2066}y", TextError::Forbidden(0x2066)),
            ("x\u{2069}", TextError::Forbidden(0x2069)),
            ("line\u{2028}sep", TextError::Forbidden(0x2028)),
        ];
        for (raw, want) in bad {
            assert_eq!(
                display_text(raw, LEARNER_NAME_MAX),
                Err(want.clone()),
                "{raw:?}"
            );
        }
    }
}
