// Until main uses config and filter, parts of them are unused.
#![allow(dead_code, unused_imports)]
mod config;
mod filter;

fn main() {
    println!("sonde");
}
