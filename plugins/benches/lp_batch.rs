//! The realistic line-protocol batch shared by the codec bench and the `lp_instr` example.

pub const LINES: usize = 10_000;

pub fn batch() -> Vec<u8> {
    let mut s = String::new();
    let t0 = 1_700_000_000_000_000_000i64;
    for i in 0..LINES {
        let host = format!("web-{:02}.prod.example.com", i % 17);
        let ts = t0 + (i as i64) * 10_000_000_000;
        match i % 3 {
            0 => s.push_str(&format!(
                "cpu,cpu=cpu{},host={host},region=eu-west-1 usage_user={:.6},usage_system={:.6},usage_idle={:.6},usage_iowait=0.25,usage_irq=0,usage_softirq=0.1,usage_steal=0,usage_guest=0 {ts}\n",
                i % 8, (i % 97) as f64 * 0.731, (i % 13) as f64 * 0.17, 100.0 - (i % 97) as f64
            )),
            1 => s.push_str(&format!(
                "mem,host={host},region=eu-west-1,role=frontend total={}i,available={}i,used={}i,free={}i,cached={}i,used_percent={:.4} {ts}\n",
                16_658_190_336u64, 9_000_000_000u64 + i as u64, 7_000_000_000u64 - i as u64, 1_234_567_890u64 + i as u64, 4_000_000_000u64, 42.0 + (i % 10) as f64 / 3.0
            )),
            _ => s.push_str(&format!(
                "disk,device=nvme0n1p{},fstype=ext4,host={host},mode=rw,path=/var/lib/data{} total=502468108288i,free={}i,used={}i,used_percent={:.3},inodes_total=31227904i,inodes_free={}i,inodes_used=1234567i {ts}\n",
                i % 4, i % 4, 300_000_000_000u64 + i as u64, 200_000_000_000u64 - i as u64, 39.8 + (i % 7) as f64 / 7.0, 29_993_337 - i
            )),
        }
    }
    s.into_bytes()
}

/// `LINES` lines like those the remote-write bench's jobs push (3 tags, 2 fields, about 85
/// bytes: `loadgen lines`).
#[allow(dead_code)] // the buffer bench uses only `batch`
pub fn push_batch() -> Vec<u8> {
    let mut s = String::new();
    let t0 = 1_700_000_000_000i64;
    for n in 0..LINES {
        s.push_str(&format!(
            "bench,agent=sonde,host=exec-{},job=j{} duration_ms={}.25,bytes={}i {}\n",
            n % 10,
            (n / 10) % 100,
            n % 997,
            n * 7 % 100_003,
            (t0 + n as i64) * 1_000_000
        ));
    }
    s.into_bytes()
}
