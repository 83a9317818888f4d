//! /proc/meminfo.

use std::collections::BTreeMap;

/// Every field of /proc/meminfo, in bytes where the kernel gives kB.
pub fn read() -> std::io::Result<BTreeMap<String, u64>> {
    Ok(parse(&std::fs::read_to_string("/proc/meminfo")?))
}

/// Parses the text of /proc/meminfo (`MemTotal:  16300000 kB`).
pub fn parse(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut parts = rest.split_whitespace();
            let value: u64 = parts.next()?.parse().ok()?;
            let value = match parts.next() {
                Some("kB") => value * 1024,
                _ => value,
            };
            Some((key.trim().to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn kilobytes_become_bytes_and_counts_stay_counts() {
        let fields =
            super::parse("MemTotal:       2048 kB\nHugePages_Total:       3\nbroken line\n");
        assert_eq!(fields["MemTotal"], 2048 * 1024);
        assert_eq!(fields["HugePages_Total"], 3);
        assert_eq!(fields.len(), 2);
    }
}
