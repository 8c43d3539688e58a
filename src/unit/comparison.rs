//! The comparison values of `ConditionMemory=` and `ConditionCPUs=` (and their `Assert*=`):
//! an optional operator, then a number (systemd.unit(5)). systemd's operators are `<`,
//! `<=`, `=` (or `==`), `!=` (or `<>`), `>=` and `>`; without one the test is `>=`.
//! Parsed at load, so a unit with a malformed value fails there and not at each start.

use std::cmp::Ordering;

use super::value::parse_size;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Lower,
    LowerOrEqual,
    Equal,
    Unequal,
    GreaterOrEqual,
    Greater,
}

impl Order {
    /// Whether `actual <op> wanted` holds.
    pub fn holds(self, actual: u64, wanted: u64) -> bool {
        let o = actual.cmp(&wanted);
        match self {
            Order::Lower => o == Ordering::Less,
            Order::LowerOrEqual => o != Ordering::Greater,
            Order::Equal => o == Ordering::Equal,
            Order::Unequal => o != Ordering::Equal,
            Order::GreaterOrEqual => o != Ordering::Less,
            Order::Greater => o == Ordering::Greater,
        }
    }
}

/// Splits a leading operator off `v` (two-character ones first, so `<=` is not `<`).
/// `>=` when there is none.
pub fn split_order(v: &str) -> (Order, &str) {
    const OPS: &[(&str, Order)] = &[
        ("<=", Order::LowerOrEqual),
        (">=", Order::GreaterOrEqual),
        ("==", Order::Equal),
        ("!=", Order::Unequal),
        ("<>", Order::Unequal),
        ("<", Order::Lower),
        (">", Order::Greater),
        ("=", Order::Equal),
    ];
    let v = v.trim();
    for (op, order) in OPS {
        if let Some(rest) = v.strip_prefix(op) {
            return (*order, rest.trim_start());
        }
    }
    (Order::GreaterOrEqual, v)
}

/// `ConditionMemory=`: an operator and a size in bytes (base-1024 suffixes: `512M`, `1G`).
pub fn parse_memory(v: &str) -> Result<(Order, u64), String> {
    let (order, size) = split_order(v);
    let bytes = parse_size(size).map_err(|e| {
        format!("{e} (ConditionMemory= takes an optional <, <=, =, !=, >= or > and a size)")
    })?;
    Ok((order, bytes))
}

/// `ConditionCPUs=`: an operator and a number of CPUs.
pub fn parse_cpus(v: &str) -> Result<(Order, u64), String> {
    let (order, n) = split_order(v);
    let n = n.parse::<u64>().map_err(|_| {
        format!(
            "invalid CPU count {n:?} (ConditionCPUs= takes an optional <, <=, =, !=, >= or > \
             and a whole number)"
        )
    })?;
    Ok((order, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_as_systemd_reads_them() {
        assert_eq!(split_order("<=4"), (Order::LowerOrEqual, "4"));
        assert_eq!(split_order(">= 4"), (Order::GreaterOrEqual, "4"));
        assert_eq!(split_order("<4"), (Order::Lower, "4"));
        assert_eq!(split_order(">4"), (Order::Greater, "4"));
        assert_eq!(split_order("=4"), (Order::Equal, "4"));
        assert_eq!(split_order("==4"), (Order::Equal, "4"));
        assert_eq!(split_order("!=4"), (Order::Unequal, "4"));
        assert_eq!(split_order("<>4"), (Order::Unequal, "4"));
        assert_eq!(split_order("4"), (Order::GreaterOrEqual, "4"));
    }

    #[test]
    fn each_operator_compares() {
        let cases = [
            (Order::Lower, [true, false, false]),
            (Order::LowerOrEqual, [true, true, false]),
            (Order::Equal, [false, true, false]),
            (Order::Unequal, [true, false, true]),
            (Order::GreaterOrEqual, [false, true, true]),
            (Order::Greater, [false, false, true]),
        ];
        for (order, want) in cases {
            // actual 1, 2, 3 against wanted 2
            let got = [1, 2, 3].map(|a| order.holds(a, 2));
            assert_eq!(got, want, "{order:?}");
        }
    }

    #[test]
    fn memory_takes_sizes() {
        assert_eq!(parse_memory(">=1G"), Ok((Order::GreaterOrEqual, 1 << 30)));
        assert_eq!(parse_memory("512M"), Ok((Order::GreaterOrEqual, 512 << 20)));
        assert_eq!(parse_memory("<4096"), Ok((Order::Lower, 4096)));
        assert!(parse_memory(">=lots").is_err());
        assert!(parse_memory("").is_err());
    }

    #[test]
    fn cpus_take_counts() {
        assert_eq!(parse_cpus(">=2"), Ok((Order::GreaterOrEqual, 2)));
        assert_eq!(parse_cpus("!=1"), Ok((Order::Unequal, 1)));
        assert!(parse_cpus(">=two").is_err());
        assert!(parse_cpus(">=-1").is_err());
    }
}
