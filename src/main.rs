fn main() {
    println!("kdump-hotplugd: not built yet");
}
