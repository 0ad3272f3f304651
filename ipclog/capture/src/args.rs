use clap::Args;

/// Options of the packet sources (`-r FILE`, `-i IFACE`); ipclog flattens these into its own.
#[derive(Debug, Clone, Args, Default)]
pub struct CaptureArgs {
    /// Read packets from a pcap or pcapng capture file (`-` for standard input) instead of
    /// conntrack.
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        help_heading = "Packet capture"
    )]
    pub read_file: Option<String>,

    /// Capture live on an interface (`any` for all) instead of conntrack. Needs CAP_NET_RAW.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        conflicts_with = "read_file",
        help_heading = "Packet capture"
    )]
    pub interface: Option<String>,

    /// BPF filter expression (tcpdump syntax), e.g. `host 10.0.0.1 and port 80`.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    pub filter: Vec<String>,
}

impl CaptureArgs {
    /// Whether packets, not conntrack, are the source.
    pub fn is_capture(&self) -> bool {
        self.read_file.is_some() || self.interface.is_some()
    }
}
