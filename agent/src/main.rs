fn main() {
    println!("sonde");
}
