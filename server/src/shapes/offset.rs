//! Positions in the shape log, as the protocol writes them: `{lsn}_{op}`.
/// A position in the log: `{lsn}_{op}`; `0_inf` sits after a snapshot, before the first change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset {
    pub lsn: u64,
    pub op: u64,
}

impl Offset {
    pub const BEFORE_ALL: Offset = Offset {
        lsn: 0,
        op: u64::MAX,
    };

    pub fn parse(s: &str) -> Option<Offset> {
        let (lsn, op) = s.split_once('_')?;
        let lsn = lsn.parse().ok()?;
        let op = if op == "inf" {
            u64::MAX
        } else {
            op.parse().ok()?
        };
        Some(Offset { lsn, op })
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.op == u64::MAX {
            write!(f, "{}_inf", self.lsn)
        } else {
            write!(f, "{}_{}", self.lsn, self.op)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_and_print_like_the_protocol() {
        let a = Offset::parse("0_inf").expect("0_inf");
        let b = Offset::parse("100_0").expect("100_0");
        let c = Offset::parse("100_3").expect("100_3");
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "0_inf");
        assert_eq!(c.to_string(), "100_3");
        for bad in ["", "x_1", "1", "1_", "-1_0", "1_-2"] {
            assert!(Offset::parse(bad).is_none(), "{bad}");
        }
    }
}
